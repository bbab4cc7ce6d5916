//! Rendering a snapshot: the readable tables (`memstats`, `memrank`,
//! working sets) and their JSON forms.

use std::fmt::Write as _;

use super::{MemStats, Usage, WorkingSet, PAGE_SIZE};

impl Usage {
    /// A readable report (the article's `memstats`).
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "vmspace {} ({})", self.id, self.name);
        let kib = |p: f64| p * (PAGE_SIZE / 1024) as f64;
        let rows: [(&str, f64, &str); 4] = [
            (
                "VSS",
                self.vss_bytes as f64 / PAGE_SIZE as f64,
                "virtual size",
            ),
            ("RSS", self.rss_pages as f64, "resident"),
            ("PSS", self.pss_pages, "proportional: shared pages divided"),
            ("USS", self.uss_pages as f64, "unique: freed on exit"),
        ];
        for (k, pages, what) in rows {
            let _ = writeln!(
                s,
                "  {k:<4} {:>14.1} pages {:>16.1} KiB   {what}",
                pages,
                kib(pages)
            );
        }
        for (k, v) in [
            ("shared", self.shared_pages),
            ("referenced", self.referenced_pages),
            ("modified", self.modified_pages),
            ("linear", self.linear_pages),
            ("large", self.large_pages),
            ("tables", self.table_pages),
            ("bad VPTEs", self.bad_entries),
        ] {
            let _ = writeln!(s, "  {k:<10} {v:>8} pages");
        }
        s
    }

    /// The same as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"id\": {}, \"name\": {}, \"vss_bytes\": {}, \"rss_pages\": {}, \"rss_bytes\": {}, \
             \"pss_pages\": {}, \"pss_bytes\": {}, \"uss_pages\": {}, \"uss_bytes\": {}, \
             \"shared_pages\": {}, \"referenced_pages\": {}, \"modified_pages\": {}, \
             \"linear_pages\": {}, \"large_pages\": {}, \"table_pages\": {}, \"bad_entries\": {}}}",
            self.id,
            json_str(&self.name),
            self.vss_bytes,
            self.rss_pages,
            self.rss_bytes(),
            json_f64(self.pss_pages),
            self.pss_bytes(),
            self.uss_pages,
            self.uss_bytes(),
            self.shared_pages,
            self.referenced_pages,
            self.modified_pages,
            self.linear_pages,
            self.large_pages,
            self.table_pages,
            self.bad_entries,
        )
    }
}

impl MemStats {
    /// `memrank`: a readable table of all vmspaces, largest PSS first, in
    /// KiB, followed by the frame totals.
    pub fn to_table(&self) -> String {
        let kib = PAGE_SIZE / 1024;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>6} {:<16} {:>12} {:>12} {:>14} {:>12} {:>12}",
            "ID", "NAME", "VSS KiB", "RSS KiB", "PSS KiB", "USS KiB", "REF KiB"
        );
        for u in self.ranked() {
            let name: String = u.name.chars().take(16).collect();
            let _ = writeln!(
                s,
                "{:>6} {:<16} {:>12} {:>12} {:>14.1} {:>12} {:>12}",
                u.id,
                name,
                u.vss_bytes / 1024,
                u.rss_pages * kib,
                u.pss_pages * kib as f64,
                u.uss_pages * kib,
                u.referenced_pages * kib
            );
        }
        let t = self.totals();
        let _ = writeln!(
            s,
            "frames: {} RAM, {} user ({} shared), {} vpagetable, {} free",
            t.ram, t.user, t.shared, t.table, t.free
        );
        s
    }

    /// `memrank --json`: `{"page_size", "frames": {...}, "vmspaces": [...]}`
    /// with the vmspaces largest PSS first.
    pub fn to_json(&self) -> String {
        let t = self.totals();
        let vms: Vec<String> = self.ranked().iter().map(|u| u.to_json()).collect();
        format!(
            "{{\"page_size\": {PAGE_SIZE}, \"frames\": {{\"ram\": {}, \"user\": {}, \"shared\": {}, \
             \"table\": {}, \"free\": {}}}, \"vmspaces\": [{}]}}",
            t.ram,
            t.user,
            t.shared,
            t.table,
            t.free,
            vms.join(", ")
        )
    }
}

impl WorkingSet {
    /// A readable report: the total and the ranges.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "vmspace {}: working set {} pages ({} KiB) in {} ranges\n",
            self.id,
            self.pages,
            self.bytes() / 1024,
            self.ranges.len()
        );
        for (a, b) in &self.ranges {
            let _ = writeln!(s, "  {a:#014x}-{b:#014x} {:>8} pages", (b - a) / PAGE_SIZE);
        }
        s
    }
    /// The same as JSON: `{"id", "pages", "bytes", "ranges": [[start, end], ...]}`.
    pub fn to_json(&self) -> String {
        let r: Vec<String> = self
            .ranges
            .iter()
            .map(|(a, b)| format!("[{a}, {b}]"))
            .collect();
        format!(
            "{{\"id\": {}, \"pages\": {}, \"bytes\": {}, \"ranges\": [{}]}}",
            self.id,
            self.pages,
            self.bytes(),
            r.join(", ")
        )
    }
}

pub(super) fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}
