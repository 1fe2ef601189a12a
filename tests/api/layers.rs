//! The house rules of `src/`, read from the code itself: imports run one way, down
//! (`app -> seed -> transport -> graphql -> catalog -> {cache, db} -> {config, error,
//! metrics, web, telemetry}`, every `crate::` path checked); the layers above the catalog
//! never reach the cache around it; fred's types stay in `src/cache/`; no file is longer
//! than 400 lines.
use std::{collections::BTreeSet, path::Path};

/// Each top-level room of `src/` and its height: a room may name only lower ones.
const RANKS: &[(&str, u8)] = &[
    ("app", 7),
    ("seed", 6),
    ("transport", 5),
    ("graphql", 4),
    ("catalog", 3),
    ("cache", 2),
    ("db", 2),
    ("config", 1),
    ("error", 1),
    ("metrics", 1),
    ("web", 1),
    ("telemetry", 1),
];

const MAX_LINES: usize = 400;

fn rank(room: &str) -> Option<u8> {
    RANKS.iter().find(|(r, _)| *r == room).map(|(_, n)| *n)
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (doc comments included).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut block = 0usize;
    for line in text.lines() {
        let mut rest = line;
        loop {
            if block > 0 {
                match rest.find("*/") {
                    Some(end) => {
                        block -= 1;
                        rest = &rest[end + 2..];
                    }
                    None => break,
                }
            } else if let Some(start) = rest.find("/*") {
                let before = &rest[..start];
                match before.find("//") {
                    Some(c) => {
                        out.push_str(&before[..c]);
                        break;
                    }
                    None => {
                        out.push_str(before);
                        block += 1;
                        rest = &rest[start + 2..];
                    }
                }
            } else {
                out.push_str(rest.split("//").next().unwrap_or(""));
                break;
            }
        }
        out.push('\n');
    }
    out
}

/// The top-level rooms a piece of code names: `crate::x` paths, and the first names of
/// `use crate::{x, y::z, ...}` groups.
fn named_rooms(code: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level items, up to its closing brace.
            let (mut depth, mut item_start) = (0i32, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rooms.insert(ident(group[item_start..i].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        rooms.insert(ident(group[item_start..i].trim_start()));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            rooms.insert(ident(rest));
        }
    }
    rooms.remove("");
    rooms
}

#[test]
fn the_layers_import_one_way_down_and_files_stay_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(
        files.len() > 40,
        "found only {} files under src/",
        files.len()
    );
    let mut broken = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let room = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            broken.push(format!("{rel}: {lines} lines (at most {MAX_LINES})"));
        }
        if matches!(room.as_str(), "lib" | "main") {
            continue;
        }
        let Some(own) = rank(&room) else {
            broken.push(format!("{rel}: room `{room}` has no place in the layers"));
            continue;
        };
        let code = code(&text);
        for named in named_rooms(&code) {
            if named == room {
                continue;
            }
            match rank(&named) {
                Some(theirs) if theirs < own => {}
                Some(_) => broken.push(format!("{rel}: `{room}` names `{named}`, not below it")),
                None => broken.push(format!("{rel}: names `crate::{named}`, not a room")),
            }
        }
        if matches!(room.as_str(), "graphql" | "transport" | "app" | "seed")
            && code.contains(".cache()")
            && room != "seed"
        {
            broken.push(format!(
                "{rel}: reaches the cache around the catalog (`.cache()`)"
            ));
        }
        if room != "cache" && code.contains("fred::") {
            broken.push(format!("{rel}: fred's types outside src/cache/"));
        }
    }
    assert!(
        broken.is_empty(),
        "house rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_what_a_file_names() {
    let sample = code(
        "use crate::{\n    cache::{Kind, Event},\n    error::AppError,\n};\n// crate::app in a comment\nfn f() { crate::metrics::shed(); }\n/* crate::seed */",
    );
    let named: Vec<String> = named_rooms(&sample).into_iter().collect();
    assert_eq!(named, ["cache", "error", "metrics"]);
}
