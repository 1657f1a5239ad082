//! `{{ }}` templates of webhook URIs, header values and bodies (PROTOCOL.md §3).
//!
//! A template is parsed once, when the deployment file is validated, into literal text and
//! variable references; a malformed `{{` or a variable outside §3 is a file-validation error.
//! Rendering happens for every attempt of a call, so rendered secrets are never kept.
//!
//! The syntax is a strict subset of mustache — variable tags only — and the escaping rules
//! depend on where a value lands (JSON string, URI, header), which general template engines do
//! not model. A small scanner states those rules directly, so hookgate carries its own.

mod parse;
mod render;
mod request;

pub(crate) use parse::Segment;
pub use parse::{ArmoryVar, Template, TemplateError, Variable};
pub use render::{ArmoryValues, Escape, RenderError, RenderValues};
pub(crate) use render::{push_json_escaped, push_percent_encoded, whole_url_allowed};
pub(crate) use request::fixed_uri_problem;
pub use request::{RenderedRequest, RequestTemplate, is_reserved_header};
