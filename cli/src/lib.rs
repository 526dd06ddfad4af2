//! The `mcp-policy` command line, as a library so its tests can reach the
//! pieces: policy files (JSON or YAML) checked by the very loader the filter
//! uses, decisions explained by the very engine the filter runs, and Envoy /
//! Istio configuration rendered around a policy.

pub mod canonical;
pub mod explain;
pub mod policy_file;
pub mod quote;
pub mod render;
pub mod yaml;
