//! YAML merge keys (`<<: *defaults`), which Litestream's Go YAML parser honours and yaml-rust2
//! does not. A document-to-document rewrite applied before any key is read; reports nothing.

use yaml_rust2::Yaml;

/// Applies YAML merge keys (`<<: *defaults`, or `<<: [*a, *b]`), which Litestream's Go YAML
/// parser honours and yaml-rust2 does not: keys written in the mapping win, then earlier merged
/// mappings. A `<<` whose value is not a mapping (or list of mappings) is kept as a plain key.
pub(super) fn apply_merge_keys(y: &Yaml) -> Yaml {
    match y {
        Yaml::Array(items) => Yaml::Array(items.iter().map(apply_merge_keys).collect()),
        Yaml::Hash(map) => {
            let merge_key = Yaml::String("<<".to_string());
            let sources: Option<Vec<&yaml_rust2::yaml::Hash>> = match map.get(&merge_key) {
                Some(Yaml::Hash(h)) => Some(vec![h]),
                Some(Yaml::Array(list)) => list
                    .iter()
                    .map(|v| match v {
                        Yaml::Hash(h) => Some(h),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            let mut out = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                if sources.is_some() && *k == merge_key {
                    continue;
                }
                out.insert(k.clone(), apply_merge_keys(v));
            }
            for source in sources.unwrap_or_default() {
                for (k, v) in source {
                    if !out.contains_key(k) {
                        out.insert(k.clone(), apply_merge_keys(v));
                    }
                }
            }
            Yaml::Hash(out)
        }
        other => other.clone(),
    }
}
