use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::auth::{AuthError, Principal};

/// How verified claims become a [`Principal`], and the time checks that jsonwebtoken would
/// otherwise do against the system clock instead of the injected one.
#[derive(Debug, Clone)]
pub(super) struct ClaimRules {
    pub(super) leeway_secs: i64,
    pub(super) required_scope: Option<String>,
    pub(super) roles_claim: String,
    pub(super) tenant_claim: Option<String>,
}

impl ClaimRules {
    pub(super) fn principal(
        &self,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        // With its fraction of a second: RFC 7519 allows a NumericDate that is not whole.
        let now = now.timestamp() as f64 + f64::from(now.timestamp_subsec_nanos()) / 1e9;
        let leeway = self.leeway_secs as f64;
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or_else(|| AuthError::invalid("the token has no numeric `exp` claim"))?;
        // RFC 7519 §4.1.4: valid only before `exp` (here, before `exp` and the leeway).
        if now >= exp + leeway {
            return Err(AuthError::ExpiredToken);
        }
        if let Some(nbf) = claims.get("nbf") {
            match nbf.as_f64() {
                Some(nbf) if nbf - leeway <= now => {}
                Some(_) => return Err(AuthError::invalid("the token is not valid yet (`nbf`)")),
                None => return Err(AuthError::invalid("the token's `nbf` is not a number")),
            }
        }
        // jsonwebtoken accepts an array `iss` holding ours among others; RFC 7519 §4.1.1
        // makes it one string, and a token naming other issuers is not only ours.
        if !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(AuthError::invalid(
                "the token's `iss` claim is not one string",
            ));
        }
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::invalid("the token has no `sub` claim")),
        };
        let mut scopes = strings(claims.get("scope"));
        scopes.extend(strings(claims.get("scp")));
        if let Some(required) = &self.required_scope
            && !scopes.iter().any(|s| s == required)
        {
            return Err(AuthError::Forbidden {
                reason: format!("the token lacks the scope `{required}`"),
            });
        }
        Ok(Principal {
            subject,
            scopes,
            roles: roles(claims.get(&self.roles_claim)),
            tenant: self
                .tenant_claim
                .as_ref()
                .and_then(|c| claims.get(c))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// An array of strings, or one string naming one role: unlike a scope string, a role's name
/// may hold spaces (`Release Manager`), and splitting it would grant the roles its words name.
/// Other values count as none.
fn roles(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(role)) if role.is_empty() => Vec::new(),
        Some(Value::String(role)) => vec![role.clone()],
        other => strings(other),
    }
}

/// A space-separated string (`scope`) or an array of strings (`scp`); other values count as
/// none. Only a space separates (RFC 6749 §3.3): split at any whitespace, one token
/// `approvals<EM SPACE>callbacks` would grant `callbacks`.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|token| !token.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules {
            leeway_secs: 60,
            required_scope: None,
            roles_claim: "roles".into(),
            tenant_claim: Some("tenant".into()),
        }
    }

    /// `v` with an `iss`, which jsonwebtoken has checked before these rules run.
    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(mut m) => {
                m.entry("iss")
                    .or_insert_with(|| json!("https://idp.example"));
                m
            }
            _ => unreachable!(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn scopes_come_from_scope_and_scp_and_roles_from_the_configured_claim() {
        let c = claims(
            json!({"sub": "s", "exp": 1000, "scope": "a b", "scp": ["c"],
                              "roles": ["r"], "tenant": "t"}),
        );
        let p = rules().principal(&c, at(0)).unwrap();
        assert_eq!(p.scopes, ["a", "b", "c"]);
        assert_eq!(p.roles, ["r"]);
        assert_eq!(p.tenant.as_deref(), Some("t"));
    }

    /// A role given as one string is that role: split like a scope string, `Release Manager`
    /// would grant `Manager`.
    #[test]
    fn a_role_given_as_one_string_is_not_split_at_its_spaces() {
        let role = |roles: Value| {
            let c = claims(json!({"sub": "s", "exp": 1000, "roles": roles}));
            rules().principal(&c, at(0)).unwrap().roles
        };
        assert_eq!(role(json!("Release Manager")), ["Release Manager"]);
        assert_eq!(role(json!("")), Vec::<String>::new());
        assert_eq!(
            role(json!(["Release Manager", 7, "ops"])),
            ["Release Manager", "ops"]
        );
        assert_eq!(role(json!({"Manager": true})), Vec::<String>::new());
    }

    #[test]
    fn expiry_and_not_before_allow_the_leeway_and_no_more() {
        let c = claims(json!({"sub": "s", "exp": 1000, "nbf": 500}));
        assert!(rules().principal(&c, at(1059)).is_ok());
        assert_eq!(
            rules().principal(&c, at(1060)),
            Err(AuthError::ExpiredToken),
            "at `exp` and the leeway it has expired"
        );
        assert!(rules().principal(&c, at(440)).is_ok());
        assert!(rules().principal(&c, at(439)).is_err());
    }

    #[test]
    fn missing_or_odd_claims_are_refused_and_extreme_numbers_accepted() {
        for (c, why) in [
            (json!({"exp": 1000}), "the token has no `sub` claim"),
            (
                json!({"sub": "", "exp": 1000}),
                "the token has no `sub` claim",
            ),
            (json!({"sub": "s"}), "the token has no numeric `exp` claim"),
            (
                json!({"sub": "s", "exp": "1000"}),
                "the token has no numeric `exp` claim",
            ),
            (
                json!({"sub": "s", "exp": 1000, "nbf": "soon"}),
                "the token's `nbf` is not a number",
            ),
        ] {
            assert_eq!(
                rules().principal(&claims(c.clone()), at(0)),
                Err(AuthError::invalid(why)),
                "{c}"
            );
        }
        // Extreme but valid numbers, and a scope that is not a string: no overflow, no scopes.
        let extreme = claims(json!({"sub": "s", "exp": 1e308, "nbf": -1e308, "scope": 5}));
        let principal = rules().principal(&extreme, at(0)).expect("valid");
        assert!(principal.scopes.is_empty());
    }

    #[test]
    fn a_scope_string_is_split_at_spaces_only() {
        let scopes = |scope: &str| {
            let c = claims(json!({"sub": "s", "exp": 1000, "scope": scope}));
            rules().principal(&c, at(0)).unwrap().scopes
        };
        assert_eq!(scopes("  a  b "), ["a", "b"]);
        for other in ["a\u{2003}b", "a\u{a0}b", "a\tb", "a\nb"] {
            assert_eq!(scopes(other), [other], "{other:?} is one token");
        }
    }

    #[test]
    fn an_issuer_that_is_not_one_string_is_refused() {
        for iss in [
            json!(["https://idp.example", "https://evil.example"]),
            json!(7),
        ] {
            let c = claims(json!({"sub": "s", "exp": 1000, "iss": iss}));
            assert_eq!(
                rules().principal(&c, at(0)),
                Err(AuthError::invalid(
                    "the token's `iss` claim is not one string"
                )),
                "{iss}"
            );
        }
    }

    #[test]
    fn a_missing_required_scope_is_forbidden() {
        let rules = ClaimRules {
            required_scope: Some("callbacks".into()),
            ..rules()
        };
        let c = claims(json!({"sub": "s", "exp": 1000, "scope": "other"}));
        let err = rules.principal(&c, at(0)).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
    }
}
