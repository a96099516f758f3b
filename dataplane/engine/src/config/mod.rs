//! Mesh configuration: Istio's objects read from files, validated into the
//! checked types the engine runs on.
//!
//! ```text
//! TOML text ──serde──▶ types::MeshConfig ──validate──▶ model::Config
//!                     (Istio field names)            (defaults applied,
//!                                                      regexes compiled)
//! Istio YAML ──yaml──▶ the same tables (source: files, directories, merged)
//! the same tables ──yaml_out──▶ Istio YAML (`meshsim export`)
//! ```

pub mod analyze;
mod duration;
mod error;
pub mod file;
mod model;
pub mod source;
mod validate;
pub mod yaml;
pub mod yaml_out;

pub use duration::{IstioDuration, format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors, FieldPath, LineCol, Segment, line_col};
pub use model::*;

pub use validate::{Warning, default_retry_policy, fqdn, host_matches};

/// Validates a parsed mesh config: Istio's rules and defaults (every error
/// with its field path), then the analyzer's findings on the valid config.
pub fn validate(source: file::MeshConfig) -> Result<(Config, Vec<Warning>), Vec<ConfigError>> {
    let (config, mut warnings) = validate::rules(source)?;
    warnings.extend(analyze::analyze(&config));
    Ok((config, warnings))
}

use toml::de::DeTable;

/// Reads and validates a mesh config from TOML text.
///
/// `file` names the source in messages. On success returns the config and the
/// warnings (things Istio accepts that are probably mistakes), both with
/// line:column; on failure every error found, with line:column.
pub fn from_toml(source: &str, file: Option<&str>) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let parsed: file::MeshConfig = match toml::from_str(source) {
        Ok(p) => p,
        Err(e) => return Err(ConfigErrors(vec![toml_error(&e, source, file)])),
    };
    match validate(parsed) {
        Ok((config, mut warnings)) => {
            error::locate_all(&mut warnings, file, source);
            Ok((config, warnings))
        }
        Err(errors) => Err(ConfigErrors(errors).locate_in(file, source)),
    }
}

/// Turns a toml/serde error into a [`ConfigError`] with path and line:column.
pub fn toml_error(e: &toml::de::Error, source: &str, file: Option<&str>) -> ConfigError {
    let span = e.span();
    let path = match (&span, DeTable::parse(source)) {
        (Some(span), Ok(doc)) => error::path_at(doc.get_ref(), span.start),
        _ => FieldPath::root(),
    };
    ConfigError {
        file: file.map(str::to_owned),
        path,
        code: None,
        message: e.message().trim().to_owned(),
        location: span.map(|s| line_col(source, s.start)),
    }
}
