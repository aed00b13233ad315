//! Several policies behind one layer, chosen by the request's path.

use std::sync::Arc;

use super::{ConfigError, Policy};
use crate::path;

/// Path prefixes to policies, first match first. Prefixes and skip paths
/// are kept normalised (see [`crate::path::normalize`]), prefixes without
/// their trailing slash.
pub(super) struct PathRoutes {
    skip_paths: Vec<String>,
    rules: Vec<(String, Arc<Policy>)>,
    fallback: Option<Arc<Policy>>,
}

impl PathRoutes {
    pub(super) fn new(
        rules: Vec<(String, Arc<Policy>)>,
        fallback: Option<Arc<Policy>>,
        skip_paths: impl IntoIterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        if rules.is_empty() && fallback.is_none() {
            return Err(ConfigError::NoRoutes);
        }
        let mut normal_rules = Vec::with_capacity(rules.len());
        for (prefix, policy) in rules {
            if !prefix.starts_with('/') {
                return Err(ConfigError::PathPrefix(prefix));
            }
            let normal = path::normalize(&prefix);
            normal_rules.push((normal.strip_suffix('/').unwrap_or(&normal).to_owned(), policy));
        }
        let skip_paths = skip_paths.into_iter().map(|p| path::normalize(&p).into_owned()).collect();
        Ok(Self { skip_paths, rules: normal_rules, fallback })
    }

    /// The policy for `path`: the first rule covering it, else the
    /// fallback; none for a skipped path.
    pub(super) fn select(&self, path: &str) -> Option<&Arc<Policy>> {
        let normal = path::normalize(path);
        if self.skip_paths.iter().any(|p| *p == normal) {
            return None;
        }
        self.rules
            .iter()
            .find(|(prefix, _)| path::covers(prefix, &normal))
            .map(|(_, policy)| policy)
            .or(self.fallback.as_ref())
    }

    /// Every policy, rules first.
    pub(super) fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.rules.iter().map(|(_, policy)| policy).chain(self.fallback.iter())
    }
}

impl std::fmt::Debug for PathRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules: Vec<(&str, &str)> = self.rules.iter().map(|(p, s)| (p.as_str(), s.policy.as_str())).collect();
        f.debug_struct("PathRoutes")
            .field("rules", &rules)
            .field("fallback", &self.fallback.as_ref().map(|s| s.policy.as_str()))
            .field("skip_paths", &self.skip_paths)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::RateLimitConfig;
    use super::*;

    #[test]
    fn path_rules_match_the_normalised_path_by_whole_segments() {
        let named = |name: &str| RateLimitConfig::builder().policy(name).rate("1/m").build().unwrap();
        let config = RateLimitConfig::by_path_prefix(
            [
                ("/auth/login".to_owned(), named("login")),
                ("/api".to_owned(), named("api")),
                ("/v2/".to_owned(), named("v2")),
                ("/files/a%2fb".to_owned(), named("files")),
            ],
            Some(named("site")),
            ["/health".to_owned()],
        )
        .unwrap();
        let policy = |path: &str| config.select(path).map(|s| s.policy.as_str());
        for path in [
            "/auth/login",
            "//auth/login",
            "/auth//login",
            "/auth/login//",
            "/auth/./login",
            "/./auth/login",
            "/auth/x/../login",
            "/auth/x/y/../../login",
            "/../auth/login",
            "/x/../../auth/login",
            "/%61uth/login",
            "/%61%75%74%68/%6C%6f%67%69%6e",
            "/auth/login/",
            "/auth/login/.",
            "/auth/login/x",
            "/auth/login/%2e%2e/login",
        ] {
            assert_eq!(policy(path), Some("login"), "{path}");
        }
        for path in ["/api", "/api/", "/api/items", "/api/items/", "//api/items", "/apiary/../api/x"] {
            assert_eq!(policy(path), Some("api"), "{path}");
        }
        for path in ["/v2", "/v2/", "/v2/x", "/%76%32"] {
            assert_eq!(policy(path), Some("v2"), "{path}");
        }
        for path in ["/files/a%2Fb", "/files/a%2fb/c"] {
            assert_eq!(policy(path), Some("files"), "{path}");
        }
        for path in [
            "/",
            "/apiary",
            "/api2",
            "/auth/loginx",
            "/auth/login%2Fx",
            "/auth/log%69n.json",
            "/v2x",
            "/API",
            "/auth/login/..",
            "/files/a/b",
            "/health/",
            "/health/x",
            "/%",
            "/%zz/api",
        ] {
            assert_eq!(policy(path), Some("site"), "{path}");
        }
        for path in ["/health", "//health", "/x/../health", "/%68ealth", "/./health"] {
            assert_eq!(policy(path), None, "{path} is skipped");
        }
    }

    #[test]
    fn routes_need_a_rule_or_a_fallback_and_do_not_nest() {
        let empty = RateLimitConfig::by_path_prefix([], None, []).unwrap_err();
        assert!(matches!(empty, ConfigError::NoRoutes), "{empty}");
        let named = |name: &str| RateLimitConfig::builder().policy(name).rate("1/m").build().unwrap();
        let inner = RateLimitConfig::by_path_prefix([("/a".to_owned(), named("a"))], None, []).unwrap();
        assert_eq!(inner.policy(), None, "a routed configuration has no single policy");
        assert!(inner.store().is_none());
        let nested = RateLimitConfig::by_path_prefix([("/x".to_owned(), inner)], None, []).unwrap_err();
        assert!(matches!(nested, ConfigError::NestedRoutes(_)), "{nested}");
    }
}
