//! Authentication: the `authc` domains of `config.yml`.

pub mod jwt;
