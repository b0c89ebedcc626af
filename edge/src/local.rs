//! Running the edge locally (tests, benchmarks): the wrangler configuration for a prebuilt
//! worker, so every local runner declares the same bindings as `wrangler.toml`.

use std::path::Path;

/// A wrangler config (TOML) that runs the prebuilt worker at `shim` in front of
/// `coordinators`, with the `SiteView` Durable Object and the given extra vars.
pub fn wrangler_config(shim: &Path, coordinators: &[&str], edge_secret: &str, vars: &[(&str, &str)]) -> String {
    let mut config = format!(
        "name = \"allot-edge-local\"\nmain = \"{}\"\ncompatibility_date = \"2026-05-01\"\n\n\
         [[durable_objects.bindings]]\nname = \"SITE_VIEWS\"\nclass_name = \"SiteView\"\n\n\
         [[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"SiteView\"]\n\n[vars]\n\
         ALLOT_COORDINATORS = \"{}\"\nALLOT_EDGE_SECRET = \"{edge_secret}\"\n",
        shim.display(),
        coordinators.join(",")
    );
    for (name, value) in vars {
        config.push_str(&format!("{name} = \"{value}\"\n"));
    }
    config
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_local_config_declares_the_durable_object_and_vars() {
        let text = super::wrangler_config(
            std::path::Path::new("/x/shim.mjs"),
            &["http://a", "http://b"],
            "s",
            &[("ALLOT_REGION", "east")],
        );
        assert!(text.contains("class_name = \"SiteView\""));
        assert!(text.contains("new_sqlite_classes = [\"SiteView\"]"));
        assert!(text.contains("ALLOT_COORDINATORS = \"http://a,http://b\""));
        assert!(text.contains("ALLOT_REGION = \"east\""));
    }
}
