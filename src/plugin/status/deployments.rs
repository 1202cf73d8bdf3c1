//! The `Deployed:` lines of `kubectl caas status certificate`: each deploy target of the
//! Certificate, what reached it and when, or why not (the destination's words), and the
//! verdict's tail naming the first target that is not deployed.

use serde::Serialize;

use crate::api::conditions::find;
use crate::api::{DeploymentStatus, Time};
use crate::plugin::report::{ConditionReport, line};

/// One target's deployment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentReport {
    pub deployed: Option<ConditionReport>,
    pub deployed_at: Option<Time>,
    pub destination: Option<String>,
    pub failed_attempts: Option<i32>,
    pub namespaces: Vec<String>,
    pub next_attempt_time: Option<Time>,
    pub not_after: Option<Time>,
    #[serde(rename = "remoteID")]
    pub remote_id: Option<String>,
    pub serial: Option<String>,
    pub target: String,
}

impl DeploymentReport {
    pub fn of(d: &DeploymentStatus) -> Self {
        DeploymentReport {
            deployed: find(&d.conditions, "Deployed").map(ConditionReport::of),
            deployed_at: d.deployed_at,
            destination: d.destination.clone(),
            failed_attempts: d.failed_attempts,
            namespaces: d.namespaces.clone(),
            next_attempt_time: d.next_attempt_time,
            not_after: d.not_after,
            remote_id: d.remote_id.clone(),
            serial: d.serial.clone(),
            target: d.target.clone(),
        }
    }

    fn ok(&self) -> bool {
        self.deployed.as_ref().is_some_and(|c| c.status == "True")
    }
}

/// The lines: `DeployTarget/edge (acm) True: serial .. since ..`, then where.
pub fn render(out: &mut String, deployments: &[DeploymentReport]) {
    for (i, d) in deployments.iter().enumerate() {
        let label = if i == 0 { "Deployed:" } else { "" };
        let destination = d.destination.as_deref().unwrap_or("?");
        let state = match &d.deployed {
            Some(c) if c.status == "True" => format!("True: {}", c.message),
            Some(c) => format!("{} {}: {}", c.status, c.reason, c.message),
            None => "not looked at yet".to_string(),
        };
        line(out, label, format!("{} ({destination}) {state}", d.target));
        let mut more = Vec::new();
        if let Some(at) = d.deployed_at {
            more.push(format!("last deployed {at}"));
        }
        if let Some(t) = d.not_after {
            more.push(format!("that copy valid until {t}"));
        }
        if let (Some(n), Some(next)) = (d.failed_attempts, d.next_attempt_time) {
            more.push(format!("{n} failed attempts, next {next}"));
        }
        if !more.is_empty() {
            line(out, "", format!("  {}", more.join("; ")));
        }
    }
}

/// The verdict's addition when a target is not deployed: `, NOT DEPLOYED to T (R): ...`.
pub fn verdict_tail(deployments: &[DeploymentReport]) -> Option<String> {
    let d = deployments.iter().find(|d| !d.ok())?;
    let reason = d
        .deployed
        .as_ref()
        .map(|c| c.reason.as_str())
        .unwrap_or_default();
    let advice = match reason {
        "" => "wait: the deploy controller has not looked at it yet",
        r => crate::plugin::verdict::certificate_advice(r),
    };
    Some(format!(
        "; NOT DEPLOYED to {} ({reason}): {advice}",
        d.target
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Condition;

    #[test]
    fn each_target_says_what_reached_it_or_why_not() {
        let ok = DeploymentStatus {
            target: "DeployTarget/edge".into(),
            destination: Some("acm".into()),
            remote_id: Some("arn:aws:acm:us-east-1:1:certificate/x".into()),
            serial: Some("0a".into()),
            deployed_at: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            conditions: vec![Condition::new(
                "Deployed",
                true,
                "Deployed",
                "serial 0a deployed to arn:x",
            )],
            ..Default::default()
        };
        let failing = DeploymentStatus {
            target: "DeployTarget/copies".into(),
            destination: Some("secretCopies".into()),
            failed_attempts: Some(2),
            next_attempt_time: Some("2026-12-01T10:01:00Z".parse().unwrap()),
            conditions: vec![Condition::new(
                "Deployed",
                false,
                "CopyConflict",
                "Secret b/web exists",
            )],
            ..Default::default()
        };
        let reports: Vec<_> = [ok, failing].iter().map(DeploymentReport::of).collect();
        let mut out = String::new();
        render(&mut out, &reports);
        assert!(
            out.contains(
                "  Deployed:    DeployTarget/edge (acm) True: serial 0a deployed to arn:x\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "DeployTarget/copies (secretCopies) False CopyConflict: Secret b/web exists"
            ),
            "{out}"
        );
        assert!(
            out.contains("2 failed attempts, next 2026-12-01T10:01:00Z"),
            "{out}"
        );
        let tail = verdict_tail(&reports).unwrap();
        assert!(
            tail.starts_with("; NOT DEPLOYED to DeployTarget/copies (CopyConflict): rename"),
            "{tail}"
        );
        assert_eq!(verdict_tail(&reports[..1]), None);
    }
}
