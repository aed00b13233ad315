//! The store keys `docs/keys.md` shows are the keys the layer writes:
//! each is computed here from the configuration the page names.

use tower_ratelimit_smart::{Algorithm, RateLimitConfig};

fn documented_keys() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/keys.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("## Store keys").nth(1).unwrap();
    let block = section.split("```\n").nth(3).unwrap();
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_documented_keys_are_the_keys_written() {
    let key = |config: RateLimitConfig, identity: &str| config.store_keys("/", identity).unwrap().remove(0).0;
    let computed = [
        key(RateLimitConfig::builder().rate("5/m").build().unwrap(), "ip:203.0.113.9"),
        key(RateLimitConfig::builder().policy("login").rate("5/15m").build().unwrap(), "ip:2001:db8:1:2::7"),
        key(
            RateLimitConfig::builder().policy("api").rate("10/s").algorithm(Algorithm::TokenBucket).build().unwrap(),
            "h:demo",
        ),
        key(
            RateLimitConfig::builder()
                .policy("per-route")
                .rate("1/s")
                .algorithm(Algorithm::FixedWindow)
                .build()
                .unwrap(),
            "h:not plain",
        ),
    ];
    assert_eq!(documented_keys(), computed);
}
