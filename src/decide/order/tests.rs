use super::fixtures::*;
use super::*;
use ChallengeType as CT;

/// (authz index, name, type, token, status, to_present())
type Want = (
    usize,
    &'static str,
    ChallengeType,
    &'static str,
    ChallengeState,
    bool,
);

enum Expect {
    Is(Step),
    Validate(&'static [Want]),
    /// Reason, and fragments the message must contain.
    Fail(&'static str, &'static [&'static str]),
}

struct Case {
    name: &'static str,
    order: &'static str,
    authzs: &'static str,
    choose: Policy,
    expect: Expect,
}

fn case(
    name: &'static str,
    order: &'static str,
    authzs: &'static str,
    choose: Policy,
    expect: Expect,
) -> Case {
    Case {
        name,
        order,
        authzs,
        choose,
        expect,
    }
}

fn parse_order(json: &str) -> OrderView {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("order fixture: {e}\n{json}"))
}

fn parse_authzs(json: &str) -> Vec<AuthzView> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("authorization fixture: {e}\n{json}"))
}

fn run(cases: &[Case]) {
    for c in cases {
        let (order, authzs) = (parse_order(c.order), parse_authzs(c.authzs));
        let step = next_step(&order, &authzs, &c.choose);
        match &c.expect {
            Expect::Is(want) => assert_eq!(&step, want, "case {}", c.name),
            Expect::Validate(want) => {
                let Step::Validate(chosen) = &step else {
                    panic!("case {}: want Validate, got {step:?}", c.name)
                };
                let got: Vec<_> = chosen
                    .iter()
                    .map(|ch| {
                        (
                            ch.authz,
                            ch.name.as_str(),
                            ch.type_,
                            ch.token.as_str(),
                            ch.status,
                            ch.to_present(),
                        )
                    })
                    .collect();
                assert_eq!(got, want.to_vec(), "case {}", c.name);
            }
            Expect::Fail(reason, fragments) => {
                let Step::Fail(f) = &step else {
                    panic!("case {}: want Fail({reason}), got {step:?}", c.name)
                };
                assert_eq!(f.reason.as_str(), *reason, "case {}: {}", c.name, f.message);
                for fragment in *fragments {
                    assert!(
                        f.message.contains(fragment),
                        "case {}: {:?} lacks {fragment:?}",
                        c.name,
                        f.message
                    );
                }
            }
        }
    }
}

#[test]
fn pending_orders_with_fresh_authorizations() {
    run(&[
        case(
            "pebble: http-01 per plain name, dns-01 for the wildcard",
            PENDING_PEBBLE,
            FRESH_PEBBLE,
            http_or_dns,
            Expect::Validate(&[
                (0, "example.com", Http01, PB_APEX_HTTP, Pending, true),
                (1, "*.example.com", Dns01, PB_WILD_DNS, Pending, true),
                (2, "www.example.com", Http01, PB_WWW_HTTP, Pending, true),
            ]),
        ),
        case(
            "pebble: dns-01 for every name, dns-account-01 beside it ignored",
            PENDING_PEBBLE,
            FRESH_PEBBLE,
            dns_only,
            Expect::Validate(&[
                (0, "example.com", Dns01, PB_APEX_DNS, Pending, true),
                (1, "*.example.com", Dns01, PB_WILD_DNS, Pending, true),
                (2, "www.example.com", Dns01, PB_WWW_DNS, Pending, true),
            ]),
        ),
        case(
            "pebble: tls-alpn-01 per plain name, dns-01 for the wildcard",
            PENDING_PEBBLE,
            FRESH_PEBBLE,
            alpn_or_dns,
            Expect::Validate(&[
                (0, "example.com", TlsAlpn01, PB_APEX_ALPN, Pending, true),
                (1, "*.example.com", Dns01, PB_WILD_DNS, Pending, true),
                (2, "www.example.com", TlsAlpn01, PB_WWW_ALPN, Pending, true),
            ]),
        ),
        case(
            "sectigo: a domain pre-validated at creation is skipped, index kept",
            PENDING_SECTIGO,
            PREVALIDATED_SECTIGO,
            http_only,
            Expect::Validate(&[(1, "shop.example.com", Http01, SG_SHOP, Pending, true)]),
        ),
    ]);
}

#[test]
fn pending_orders_in_flight() {
    run(&[
        case(
            "letsencrypt: all authorizations valid, order not yet moved on",
            PENDING_LE,
            ALL_VALID_LE,
            never,
            Expect::Is(Step::Validate(vec![])),
        ),
        case(
            "letsencrypt: one http-01 being validated, the other still to present",
            PENDING_LE,
            PROCESSING_AUTHZ_LE,
            http_only,
            Expect::Validate(&[
                (0, "example.com", Http01, LE_APEX, Processing, false),
                (1, "www.example.com", Http01, LE_WWW, Pending, true),
            ]),
        ),
        case(
            "letsencrypt: the policy wants dns-01 though http-01 is being validated",
            PENDING_LE,
            PROCESSING_AUTHZ_LE,
            dns_only,
            Expect::Validate(&[
                (0, "example.com", Dns01, LE_APEX, Pending, true),
                (1, "www.example.com", Dns01, LE_WWW, Pending, true),
            ]),
        ),
        case(
            "letsencrypt: challenge valid, its authorization not yet updated",
            PENDING_LE,
            CHALLENGE_VALID_LE,
            dns_only,
            Expect::Validate(&[(0, "example.com", Dns01, LE_APEX, Valid, false)]),
        ),
    ]);
}

#[test]
fn orders_past_authorization() {
    run(&[
        case(
            "ready: send the CSR",
            READY_LE,
            ALL_VALID_LE,
            never,
            Expect::Is(Step::Finalize),
        ),
        case(
            "ready, authorizations not fetched",
            READY_LE,
            NONE,
            never,
            Expect::Is(Step::Finalize),
        ),
        case(
            "processing: the CA is issuing",
            PROCESSING_LE,
            NONE,
            never,
            Expect::Is(Step::AwaitIssuance),
        ),
        case(
            "valid: fetch the certificate",
            VALID_LE,
            ALL_VALID_LE,
            never,
            Expect::Is(Step::Download),
        ),
    ]);
}

#[test]
fn invalid_orders() {
    const BARE: &str = "the CA marked the order invalid";
    run(&[
        case(
            "letsencrypt: order error and a failed http-01",
            INVALID_LE,
            INVALID_AUTHZ_LE,
            never,
            Expect::Fail(
                "OrderFailed",
                &[
                    BARE,
                    "caa: Error finalizing order",
                    "example.com: unauthorized: 93.",
                ],
            ),
        ),
        case(
            "pebble: no reason given at all",
            INVALID_PEBBLE,
            ALL_VALID_LE,
            never,
            Expect::Is(Step::Fail(OrderFailure::new(Reason::OrderFailed, BARE))),
        ),
        case(
            "pebble: no order error, a challenge error",
            INVALID_PEBBLE,
            INVALID_AUTHZ_LE,
            never,
            Expect::Is(Step::Fail(OrderFailure::new(
                Reason::OrderFailed,
                format!("{BARE}: example.com: unauthorized: {LE_404}"),
            ))),
        ),
    ]);
}

#[test]
fn dead_authorizations_fail_the_pending_order() {
    run(&[
        case(
            "letsencrypt: deactivated by the account",
            PENDING_LE,
            DEACTIVATED_LE,
            http_only,
            Expect::Fail(
                "ChallengeFailed",
                &["the authorization for example.com is deactivated"],
            ),
        ),
        case(
            "pebble: expired after two valid ones",
            PENDING_PEBBLE,
            EXPIRED_PEBBLE,
            http_or_dns,
            Expect::Fail(
                "ChallengeFailed",
                &["the authorization for www.example.com is expired"],
            ),
        ),
        case(
            "letsencrypt: revoked",
            PENDING_LE,
            REVOKED_LE,
            http_only,
            Expect::Fail(
                "ChallengeFailed",
                &["the authorization for www.example.com is revoked"],
            ),
        ),
        case(
            "letsencrypt: invalid, seen before the order turned invalid",
            PENDING_LE,
            INVALID_AUTHZ_LE,
            http_only,
            Expect::Is(Step::Fail(OrderFailure::new(
                Reason::ChallengeFailed,
                format!("the authorization for example.com is invalid: unauthorized: {LE_404}"),
            ))),
        ),
    ]);
}

#[test]
fn chosen_challenge_unusable() {
    const DNS: &str = "dns-01 for *.example.com failed: dns: NXDOMAIN looking up TXT for _acme-challenge.example.com";
    run(&[
        case(
            "pebble: the chosen dns-01 is invalid, authorization still pending",
            PENDING_PEBBLE,
            CHALLENGE_INVALID_PEBBLE,
            http_or_dns,
            Expect::Fail("ChallengeFailed", &[DNS]),
        ),
        case(
            "step-ca: dns-01 not offered",
            PENDING_STEPCA,
            NO_DNS01_STEPCA,
            dns_only,
            Expect::Is(Step::Fail(OrderFailure::new(
                Reason::ChallengeNotOffered,
                "the CA does not offer dns-01 for node-7.cluster.internal",
            ))),
        ),
        case(
            "step-ca: only device-attest-01 offered",
            PENDING_STEPCA,
            DEVICE_ATTEST_STEPCA,
            http_only,
            Expect::Fail(
                "ChallengeNotOffered",
                &["http-01 for 3f9a1c2e-7d4b-4e8a-9c61-05b2d8e7a4f0"],
            ),
        ),
        case(
            "pebble: http-01 is never offered for a wildcard",
            PENDING_PEBBLE,
            FRESH_PEBBLE,
            http_only,
            Expect::Fail(
                "ChallengeNotOffered",
                &["the CA does not offer http-01 for *.example.com"],
            ),
        ),
        case(
            "pebble: no solver for the wildcard, the policy's failure passed through",
            PENDING_PEBBLE,
            FRESH_PEBBLE,
            no_wildcard_solver,
            Expect::Is(Step::Fail(OrderFailure::new(
                Reason::NoSolver,
                "no solver matches *.example.com",
            ))),
        ),
    ]);
}

#[test]
fn the_challenge_types_a_ca_offers_parse_as_ours() {
    let fresh = parse_authzs(FRESH_PEBBLE);
    assert_eq!(fresh.len(), 3);
    assert_eq!(fresh[1].name, "*.example.com");
    let types = |a: &AuthzView| a.challenges.iter().map(|c| c.type_).collect::<Vec<_>>();
    assert_eq!(
        types(&fresh[0]),
        [
            Some(Http01),
            Some(Dns01),
            Some(CT::DnsAccount01),
            Some(TlsAlpn01)
        ]
    );
    assert_eq!(types(&fresh[1]), [Some(CT::DnsAccount01), Some(Dns01)]);
    let account = &fresh[0].challenges[2];
    assert_eq!(account.token, "HM_v1wzVaaBRtMQcHYv3uOun7mKhzomdR_2l0HUHmV0");
    assert_eq!((account.status, &account.error), (Pending, &None));

    let device = parse_authzs(DEVICE_ATTEST_STEPCA);
    assert_eq!(device[0].name, "3f9a1c2e-7d4b-4e8a-9c61-05b2d8e7a4f0");
    assert_eq!(types(&device[0]), [None]);
    assert!(parse_authzs(PREVALIDATED_SECTIGO)[0].challenges.is_empty());
}

#[test]
fn problem_text() {
    let p = |type_: Option<&str>, detail: Option<&str>| Problem {
        type_: type_.map(Into::into),
        detail: detail.map(Into::into),
    };
    let cases = [
        (
            p(
                Some("urn:ietf:params:acme:error:rateLimited"),
                Some("too many certificates (5) already issued"),
            ),
            "rateLimited: too many certificates (5) already issued",
        ),
        (
            p(Some("urn:ietf:params:acme:error:badNonce"), None),
            "badNonce: ",
        ),
        (p(None, Some("internal error")), ": internal error"),
        (
            p(Some("about:blank"), Some("Not Found")),
            "blank: Not Found",
        ),
        (p(None, None), ": "),
    ];
    for (problem, want) in cases {
        assert_eq!(problem.text(), want, "{problem:?}");
    }
    let wire: Problem = serde_json::from_str(
        r#"{"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "Error creating new order :: Cannot issue for \"localhost\"", "status": 400, "subproblems": []}"#,
    )
    .unwrap();
    assert_eq!(
        wire.text(),
        "rejectedIdentifier: Error creating new order :: Cannot issue for \"localhost\""
    );
}

#[test]
fn invalid_message_lists_the_order_error_then_each_challenge_error() {
    let (order, authzs) = (parse_order(INVALID_LE), parse_authzs(INVALID_AUTHZ_LE));
    let want = format!(
        "the CA marked the order invalid: caa: {LE_CAA}; example.com: unauthorized: {LE_404}"
    );
    assert_eq!(invalid_message(&order, &authzs), want);
    assert_eq!(
        invalid_message(&parse_order(INVALID_PEBBLE), &[]),
        "the CA marked the order invalid"
    );
}

#[test]
fn wire_names_round_trip_through_the_fixtures() {
    use serde_json::Value;
    let state = |v: &Value| v["status"].as_str().unwrap().to_owned();
    for json in ORDERS {
        let (raw, order) = (
            serde_json::from_str::<Value>(json).unwrap(),
            parse_order(json),
        );
        assert_eq!(order.status.as_str(), state(&raw));
        assert_eq!(serde_json::to_value(order.status).unwrap(), raw["status"]);
        assert_eq!(OrderState::from_wire(&state(&raw)), Some(order.status));
    }
    for json in AUTHZS {
        let raw: Vec<Value> = serde_json::from_str(json).unwrap();
        for (raw, authz) in raw.iter().zip(parse_authzs(json)) {
            assert_eq!(authz.status, *state(raw));
            assert_eq!(serde_json::to_value(authz.status).unwrap(), raw["status"]);
            let challenges = raw["challenges"].as_array().unwrap();
            for (raw, ch) in challenges.iter().zip(&authz.challenges) {
                assert_eq!(ch.status.to_string(), state(raw));
                let wire = raw["type"].as_str().unwrap();
                assert_eq!(
                    ch.type_.map(ChallengeType::as_str),
                    CT::from_wire(wire).map(|t| t.as_str())
                );
                assert_eq!(
                    ch.type_.map(|t| serde_json::to_value(t).unwrap()),
                    ch.type_.map(|_| raw["type"].clone())
                );
            }
        }
    }
    for s in [
        "pending",
        "valid",
        "invalid",
        "deactivated",
        "expired",
        "revoked",
    ] {
        let parsed: AuthorizationState = serde_json::from_value(s.into()).unwrap();
        assert_eq!(
            (parsed.to_string(), serde_json::to_value(parsed).unwrap()),
            (s.to_owned(), s.into())
        );
    }
}
