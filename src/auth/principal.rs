/// Who a valid token belongs to, and what it may do.
///
/// ```
/// use hookgate::auth::Principal;
/// let p = Principal::new("ci-bot").with_scopes(["callbacks"]).with_tenant("payments");
/// assert!(p.has_scope("callbacks"));
/// assert_eq!(p.tenant.as_deref(), Some("payments"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Principal {
    /// The subject (`sub`): a client id or a person.
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Roles, checked against an approval's `requiresRoles`.
    pub roles: Vec<String>,
    /// The tenant the token is limited to, if any.
    pub tenant: Option<String>,
}

impl Principal {
    /// A principal with no scopes, roles or tenant.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            scopes: Vec::new(),
            roles: Vec::new(),
            tenant: None,
        }
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Limits the principal to a tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
