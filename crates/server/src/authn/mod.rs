//! Authentication: the `authc` domains of `config.yml`.

pub mod jwt;
pub mod ratelimit;
pub mod xff;
