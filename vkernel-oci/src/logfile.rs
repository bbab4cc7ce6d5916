//! The runtime's log (`--log FILE`, `--log-format text|json`), as runc
//! writes it: conmon and containerd's shim read the last error from it
//! when a command fails and show it to the user.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// A `log` sink appending to the runtime's log file.
struct FileLog {
    file: Mutex<std::fs::File>,
    json: bool,
    level: log::LevelFilter,
}

impl log::Log for FileLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(self.json, r.level(), &r.args().to_string());
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A full disk never stops the runtime.
        let _ = f.write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// One log line: runc's JSON (`{"level":"error","msg":"...","time":"..."}`)
/// or text.
pub fn format_line(json: bool, level: log::Level, msg: &str) -> String {
    let level = match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug | log::Level::Trace => "debug",
    };
    let time = crate::state::now_secs();
    if json {
        let v = serde_json::json!({"level": level, "msg": msg, "time": time.to_string()});
        format!("{v}\n")
    } else {
        format!("time={time} level={level} msg={msg:?}\n")
    }
}

/// Send `log` records to `file` (none: nowhere). `debug` adds info and
/// debug lines (the plan's notes) to warnings and errors.
pub fn init(file: Option<&Path>, format: Option<&str>, debug: bool) {
    let Some(path) = file else { return };
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        eprintln!(
            "vkernel-oci: --log {}: cannot open it; logging to stderr only",
            path.display()
        );
        return;
    };
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let sink = FileLog {
        file: Mutex::new(f),
        json: format == Some("json"),
        level,
    };
    // The logger lives as long as the process.
    if log::set_logger(Box::leak(Box::new(sink))).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_runcs() {
        let l = format_line(true, log::Level::Error, "a \"b\"");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "a \"b\"");
        assert!(format_line(false, log::Level::Warn, "x").contains("level=warning msg=\"x\""));
    }
}
