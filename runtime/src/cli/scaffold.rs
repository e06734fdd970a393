//! `journeyd plugin new`: a plugin project that builds at once, with its
//! tests passing, in Rust, Python or JavaScript. The templates live in
//! `runtime/templates/` and are compiled into the binary, with the Python
//! and JavaScript SDKs and the WIT contract this journeyd ships (copied
//! into the project, so it builds anywhere); a Rust project depends on the
//! SDK of a journeyd checkout by path.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// The plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, with the `journey-sdk` crate.
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
}

/// What the plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A journey step.
    Step,
    /// A delivery channel.
    Channel,
}

/// Arguments of `journeyd plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (lowercase letters, digits and `-`); also the
    /// project's folder unless `--dir` says otherwise.
    pub name: String,
    /// The language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// A step or a channel plugin.
    #[arg(long, value_enum, default_value_t = Kind::Step)]
    pub kind: Kind,
    /// Where to create the project (a new or empty folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The `sdk` folder of a journeyd checkout, for a Rust project
    /// (default: the checkout this journeyd was built in, when it is one).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// One file of a template: its path in the project and its text.
type File = (&'static str, &'static str);

const WIT: &str = include_str!("../../../wit/journey.wit");

const RUST_STEP: &[File] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust-step/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust-step/src/lib.rs"),
    ),
    (
        "README.md",
        include_str!("../../templates/rust-step/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rust-step/.gitignore"),
    ),
];

const RUST_CHANNEL: &[File] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust-channel/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust-channel/src/lib.rs"),
    ),
    (
        "README.md",
        include_str!("../../templates/rust-channel/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rust-channel/.gitignore"),
    ),
];

const PYTHON_STEP: &[File] = &[
    ("app.py", include_str!("../../templates/python-step/app.py")),
    (
        "test_app.py",
        include_str!("../../templates/python-step/test_app.py"),
    ),
    (
        "build.sh",
        include_str!("../../templates/python-step/build.sh"),
    ),
    (
        "README.md",
        include_str!("../../templates/python-step/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python-step/.gitignore"),
    ),
    (
        "journey_sdk/__init__.py",
        include_str!("../../../sdk/python/journey_sdk/__init__.py"),
    ),
    (
        "journey_sdk/_wit.py",
        include_str!("../../../sdk/python/journey_sdk/_wit.py"),
    ),
    (
        "journey_sdk/testing.py",
        include_str!("../../../sdk/python/journey_sdk/testing.py"),
    ),
    ("wit/journey.wit", WIT),
];

const PYTHON_CHANNEL: &[File] = &[
    (
        "app.py",
        include_str!("../../templates/python-channel/app.py"),
    ),
    (
        "test_app.py",
        include_str!("../../templates/python-channel/test_app.py"),
    ),
    (
        "build.sh",
        include_str!("../../templates/python-channel/build.sh"),
    ),
    (
        "README.md",
        include_str!("../../templates/python-channel/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python-channel/.gitignore"),
    ),
    (
        "journey_sdk/__init__.py",
        include_str!("../../../sdk/python/journey_sdk/__init__.py"),
    ),
    (
        "journey_sdk/_wit.py",
        include_str!("../../../sdk/python/journey_sdk/_wit.py"),
    ),
    (
        "journey_sdk/channel.py",
        include_str!("../../../sdk/python/journey_sdk/channel.py"),
    ),
    (
        "journey_sdk/_wit_channel.py",
        include_str!("../../../sdk/python/journey_sdk/_wit_channel.py"),
    ),
    ("wit/journey.wit", WIT),
];

const JS_CHANNEL: &[File] = &[
    (
        "channel.js",
        include_str!("../../templates/js-channel/channel.js"),
    ),
    (
        "index.js",
        include_str!("../../templates/js-channel/index.js"),
    ),
    (
        "channel.test.js",
        include_str!("../../templates/js-channel/channel.test.js"),
    ),
    (
        "package.json",
        include_str!("../../templates/js-channel/package.json"),
    ),
    (
        "README.md",
        include_str!("../../templates/js-channel/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/js-channel/.gitignore"),
    ),
    (
        "journey-channel.js",
        include_str!("../../../sdk/js/journey-channel.js"),
    ),
    ("wit/journey.wit", WIT),
];

const JS_STEP: &[File] = &[
    ("step.js", include_str!("../../templates/js-step/step.js")),
    ("index.js", include_str!("../../templates/js-step/index.js")),
    (
        "step.test.js",
        include_str!("../../templates/js-step/step.test.js"),
    ),
    (
        "package.json",
        include_str!("../../templates/js-step/package.json"),
    ),
    (
        "README.md",
        include_str!("../../templates/js-step/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/js-step/.gitignore"),
    ),
    (
        "journey-sdk.js",
        include_str!("../../../sdk/js/journey-sdk.js"),
    ),
    (
        "journey-host.js",
        include_str!("../../../sdk/js/journey-host.js"),
    ),
    (
        "journey-testing.js",
        include_str!("../../../sdk/js/journey-testing.js"),
    ),
    ("wit/journey.wit", WIT),
];

/// Sample input for `journeyd step run`.
const INPUT_JSON: &str = r#"{
  "config": { "greeting": "Hello" },
  "state": {},
  "event": { "kind": "visit.started", "data": {} },
  "caps": {}
}
"#;

/// Sample customer for `journeyd step run`.
const CUSTOMER_JSON: &str = r#"{
  "id": "c-ada",
  "profile": { "name": "Ada", "email": "ada@example.com" },
  "channels": [{ "channel": "sms", "opted_in": false, "changed_at_ms": 0 }]
}
"#;

/// The `sdk` folder of the checkout this binary was built in, if any.
fn checkout_sdk() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    exe.ancestors()
        .map(|dir| dir.join("sdk"))
        .find(|sdk| sdk.join("Cargo.toml").is_file() && sdk.join("../wit/journey.wit").is_file())
}

pub fn new_plugin(args: NewArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        journey_runtime::tooling::is_plugin_name(&args.name),
        "`{}` cannot name a plugin: use lowercase letters, digits and `-`, starting with a letter (at most 64)",
        args.name
    );
    let template = match (args.lang, args.kind) {
        (Lang::Rust, Kind::Step) => RUST_STEP,
        (Lang::Rust, Kind::Channel) => RUST_CHANNEL,
        (Lang::Python, Kind::Step) => PYTHON_STEP,
        (Lang::Python, Kind::Channel) => PYTHON_CHANNEL,
        (Lang::Js, Kind::Step) => JS_STEP,
        (Lang::Js, Kind::Channel) => JS_CHANNEL,
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(empty, "{} exists and is not empty", dir.display());
    }
    let sdk_path = match args.lang {
        Lang::Rust => {
            let sdk = args.sdk.clone().or_else(checkout_sdk).context(
                "where is the journey-sdk crate? Give the `sdk` folder of a journeyd checkout with --sdk",
            )?;
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("{} does not exist", sdk.display()))?;
            anyhow::ensure!(
                sdk.join("Cargo.toml").is_file(),
                "{} is not the SDK crate (no Cargo.toml)",
                sdk.display()
            );
            sdk.display().to_string()
        }
        _ => String::new(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate}}", &args.name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk_path)
    };
    let mut files: Vec<(&str, String)> = template
        .iter()
        .map(|(path, text)| (*path, fill(text)))
        .collect();
    if args.kind == Kind::Step {
        files.push(("input.json", INPUT_JSON.to_owned()));
        files.push(("customer.json", CUSTOMER_JSON.to_owned()));
    }
    for (path, text) in &files {
        write(&dir.join(path), text)?;
    }
    println!(
        "created {} plugin `{}` ({:?}) in {}",
        match args.kind {
            Kind::Step => "step",
            Kind::Channel => "channel",
        },
        args.name,
        args.lang,
        dir.display()
    );
    println!("next: read {}", dir.join("README.md").display());
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if path.extension().is_some_and(|extension| extension == "sh") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
