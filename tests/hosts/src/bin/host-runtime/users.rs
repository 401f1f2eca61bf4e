//! Users and groups from the host's /etc/passwd and /etc/group (read directly: no NSS).

pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

pub fn user(name: &str) -> Option<User> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    for l in text.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 7 && (f[0] == name || f[2] == name) {
            return Some(User {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].into(),
                shell: f[6].into(),
            });
        }
    }
    None
}

pub fn group(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && (f[0] == name || f[2] == name))
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Supplementary groups: every group listing `name` as a member.
pub fn groups_of(name: &str) -> Vec<u32> {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m == name))
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .collect()
}
