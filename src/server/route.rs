use crate::config::GateId;
use crate::core::{CallbackId, DeploymentId};

/// What a request path asks for, below the handler's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// `/callbacks/<id>` or `/callbacks/<id>/callback`.
    Callback(CallbackId),
    /// `/deployments/<deployment>/gates/<gate>/approve` or `/reject`.
    Decide {
        deployment: DeploymentId,
        gate: GateId,
        approve: bool,
    },
}

/// A path that names nothing hookgate serves, answered with 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoRoute {
    /// Not a hookgate path at all.
    NotFound,
    /// A callback path whose id cannot be a callback id.
    UnknownCallback,
    /// An approval path whose deployment id is not valid percent-encoded UTF-8, or holds a
    /// control character, which no deployment id has.
    UnknownDeployment,
    /// An approval path whose deployment id is empty.
    EmptyDeployment,
    /// An approval path whose gate is not a gate number.
    UnknownGate,
}

impl Route {
    /// Parses the part of the path below the prefix (the query is not part of it).
    pub(super) fn parse(path: &str) -> Result<Self, NoRoute> {
        // At most one segment more than the longest route, which then matches nothing: a path
        // of many slashes, read before the sender is known, costs no more than a short one.
        // Held on the stack, as every callback's request comes here.
        let Some(rest) = path.strip_prefix('/') else {
            return Err(NoRoute::NotFound);
        };
        let mut segments = [""; 6];
        let mut count = 0;
        for (slot, segment) in segments.iter_mut().zip(rest.splitn(6, '/')) {
            *slot = segment;
            count += 1;
        }
        match segments[..count] {
            ["callbacks", id] | ["callbacks", id, "callback"] => id
                .parse()
                .map(Route::Callback)
                .map_err(|_| NoRoute::UnknownCallback),
            [
                "deployments",
                deployment,
                "gates",
                gate,
                action @ ("approve" | "reject"),
            ] => {
                let deployment = percent_decode(deployment)
                    .filter(|id| !id.contains(char::is_control))
                    .ok_or(NoRoute::UnknownDeployment)?;
                if deployment.is_empty() {
                    return Err(NoRoute::EmptyDeployment);
                }
                let gate = gate_number(gate).ok_or(NoRoute::UnknownGate)?;
                Ok(Route::Decide {
                    deployment: DeploymentId(deployment),
                    gate: GateId(gate),
                    approve: action == "approve",
                })
            }
            _ => Err(NoRoute::NotFound),
        }
    }
}

/// A gate's number as [`GateId`] shows it: decimal digits with no sign and no leading zero,
/// so that each gate has one path, the one a proxy's or cache's rules in front expect.
fn gate_number(text: &str) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Decodes `%XX` escapes; `None` for a broken escape or a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |c: u8| char::from(c).to_digit(16);
            out.push((digit(hex[0])? << 4 | digit(hex[1])?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "000000000000000000000000000000ff";

    #[test]
    fn both_callback_forms_are_served() {
        let id: CallbackId = ID.parse().unwrap();
        assert_eq!(
            Route::parse(&format!("/callbacks/{ID}")),
            Ok(Route::Callback(id))
        );
        assert_eq!(
            Route::parse(&format!("/callbacks/{ID}/callback")),
            Ok(Route::Callback(id))
        );
    }

    #[test]
    fn approval_paths_decode_the_deployment() {
        assert_eq!(
            Route::parse("/deployments/app%2F7/gates/3/reject"),
            Ok(Route::Decide {
                deployment: DeploymentId::from("app/7"),
                gate: GateId(3),
                approve: false,
            })
        );
    }

    #[test]
    fn everything_else_is_refused_without_panicking() {
        for (path, why) in [
            ("", NoRoute::NotFound),
            ("/", NoRoute::NotFound),
            ("/callbacks", NoRoute::NotFound),
            (&format!("/callbacks/{ID}/"), NoRoute::NotFound),
            (&format!("/callbacks/{ID}/other"), NoRoute::NotFound),
            ("/callbacks/xyz", NoRoute::UnknownCallback),
            ("/callbacks/é", NoRoute::UnknownCallback),
            ("/deployments/d/gates/x/approve", NoRoute::UnknownGate),
            ("/deployments/d/gates/-1/approve", NoRoute::UnknownGate),
            ("/deployments/d/gates/+2/approve", NoRoute::UnknownGate),
            ("/deployments/d/gates/02/approve", NoRoute::UnknownGate),
            (
                "/deployments/d/gates/4294967296/approve",
                NoRoute::UnknownGate,
            ),
            (
                "/deployments/%zz/gates/1/approve",
                NoRoute::UnknownDeployment,
            ),
            ("/deployments/%/gates/1/approve", NoRoute::UnknownDeployment),
            (
                "/deployments/%ff/gates/1/approve",
                NoRoute::UnknownDeployment,
            ),
            (
                "/deployments/a%00b/gates/1/approve",
                NoRoute::UnknownDeployment,
            ),
            (
                "/deployments/a%0A/gates/1/approve",
                NoRoute::UnknownDeployment,
            ),
            ("/deployments//gates/1/approve", NoRoute::EmptyDeployment),
            ("/deployments/d/gates/1/maybe", NoRoute::NotFound),
            ("/deployments/d/gates/1/approve/", NoRoute::NotFound),
            (
                "/deployments/d/gates/1/approve/more/still",
                NoRoute::NotFound,
            ),
            (&"/".repeat(65_000), NoRoute::NotFound),
        ] {
            assert_eq!(Route::parse(path), Err(why), "{path}");
        }
    }
}
