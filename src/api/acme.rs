//! ACME states as typed values (RFC 8555 section 7.1.6), with their wire names unchanged.
//!
//! They appear in `Certificate` status (`order.state`, `order.challenges[].type/state`)
//! and in the pure order state machine. In the CRD schema they stay plain strings, so a
//! value a future CA or version adds can never make a status write fail validation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            #[default]
            $(#[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// The value on the wire (and in status).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// Parses the wire value; `None` for anything else.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "String".into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(g)
            }
            fn inline_schema() -> bool {
                true
            }
        }
    };
}

wire_enum! {
    /// An ACME order's status.
    OrderState {
        Pending = "pending",
        Ready = "ready",
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    }
}

wire_enum! {
    /// An ACME authorization's status.
    AuthorizationState {
        Pending = "pending",
        Valid = "valid",
        Invalid = "invalid",
        Deactivated = "deactivated",
        Expired = "expired",
        Revoked = "revoked",
    }
}

wire_enum! {
    /// An ACME challenge's status.
    ChallengeState {
        Pending = "pending",
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    }
}

wire_enum! {
    /// The challenge types the operator can solve. A CA's other types
    /// (`device-attest-01`, ...) are skipped when reading an authorization.
    ChallengeType {
        Http01 = "http-01",
        Dns01 = "dns-01",
        TlsAlpn01 = "tls-alpn-01",
        DnsAccount01 = "dns-account-01",
        DnsPersist01 = "dns-persist-01",
    }
}

impl From<instant_acme::OrderStatus> for OrderState {
    fn from(s: instant_acme::OrderStatus) -> Self {
        use instant_acme::OrderStatus as S;
        match s {
            S::Pending => OrderState::Pending,
            S::Ready => OrderState::Ready,
            S::Processing => OrderState::Processing,
            S::Valid => OrderState::Valid,
            S::Invalid => OrderState::Invalid,
        }
    }
}

impl From<instant_acme::AuthorizationStatus> for AuthorizationState {
    fn from(s: instant_acme::AuthorizationStatus) -> Self {
        use instant_acme::AuthorizationStatus as S;
        match s {
            S::Pending => AuthorizationState::Pending,
            S::Valid => AuthorizationState::Valid,
            S::Invalid => AuthorizationState::Invalid,
            S::Revoked => AuthorizationState::Revoked,
            S::Expired => AuthorizationState::Expired,
            S::Deactivated => AuthorizationState::Deactivated,
        }
    }
}

impl From<instant_acme::ChallengeStatus> for ChallengeState {
    fn from(s: instant_acme::ChallengeStatus) -> Self {
        use instant_acme::ChallengeStatus as S;
        match s {
            S::Pending => ChallengeState::Pending,
            S::Processing => ChallengeState::Processing,
            S::Valid => ChallengeState::Valid,
            S::Invalid => ChallengeState::Invalid,
        }
    }
}

impl ChallengeType {
    /// Whether it is proven in DNS (these can prove wildcards, not IP addresses).
    pub fn is_dns(self) -> bool {
        matches!(
            self,
            ChallengeType::Dns01 | ChallengeType::DnsAccount01 | ChallengeType::DnsPersist01
        )
    }

    /// The instant-acme value, to pick the challenge from an authorization (the types
    /// instant-acme 0.8 does not know are its `Unknown`).
    pub fn to_acme(self) -> instant_acme::ChallengeType {
        match self {
            ChallengeType::Http01 => instant_acme::ChallengeType::Http01,
            ChallengeType::Dns01 => instant_acme::ChallengeType::Dns01,
            ChallengeType::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
            other => instant_acme::ChallengeType::Unknown(other.as_str().to_string()),
        }
    }

    /// Ours, for a challenge type a CA offers (`None`: one we cannot solve).
    pub fn from_acme(t: &instant_acme::ChallengeType) -> Option<Self> {
        match t {
            instant_acme::ChallengeType::Http01 => Some(ChallengeType::Http01),
            instant_acme::ChallengeType::Dns01 => Some(ChallengeType::Dns01),
            instant_acme::ChallengeType::TlsAlpn01 => Some(ChallengeType::TlsAlpn01),
            instant_acme::ChallengeType::Unknown(t) => ChallengeType::from_wire(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in [
            OrderState::Pending,
            OrderState::Ready,
            OrderState::Processing,
            OrderState::Valid,
            OrderState::Invalid,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<OrderState>(&json).unwrap(), s);
            assert_eq!(OrderState::from_wire(s.as_str()), Some(s));
        }
        assert_eq!(ChallengeType::Dns01, "dns-01");
        assert_eq!(
            ChallengeType::from_wire("dns-account-01"),
            Some(ChallengeType::DnsAccount01)
        );
        assert_eq!(ChallengeType::from_wire("device-attest-01"), None);
        assert_eq!(
            serde_json::to_string(&ChallengeType::TlsAlpn01).unwrap(),
            "\"tls-alpn-01\""
        );
        assert!(serde_json::from_str::<AuthorizationState>("\"deactivated\"").is_ok());
    }
}
