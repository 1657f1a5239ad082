//! Deployment files with one analysis step, for the tests of the analysis fields.

/// A canary target whose one analysis step (after a weight of 50) is `step`, the inside of a
/// flow mapping, with the file's top-level `section` after it.
pub fn canary_analysis(step: &str, section: &str) -> String {
    format!(
        "application: a
targets:
  prod: {{strategy: c}}
strategies:
  c:
    canary:
      steps:
        - setWeight: {{weight: 50}}
        - analysis: {{{step}}}
{section}"
    )
}
