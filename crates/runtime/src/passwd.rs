//! `/etc/passwd` and `/etc/group`, read by hand like gosu does: no NSS, no libc state, nothing a caller's
//! environment can redirect.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// The fields of each line with `n` of them. Malformed lines (and NIS `+`/`-` entries) are skipped rather than
/// fatal, as glibc does.
fn records(text: &str, n: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines().filter_map(move |line| {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with(['#', '+', '-']) {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        (f.len() == n && !f[0].is_empty()).then_some(f)
    })
}

pub fn parse_passwd(text: &str) -> Vec<User> {
    records(text, 7)
        .filter_map(|f| {
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

pub fn parse_group(text: &str) -> Vec<Group> {
    records(text, 4)
        .filter_map(|f| {
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// An account to become: the user plus the groups it gets (primary first, then memberships, no duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    pub groups: Vec<u32>,
}

/// Find `spec` (a name, or a numeric uid) like gosu: by name first, then by number. A number without an entry
/// is allowed (uid = gid = the number, no supplementary groups) as gosu allows it.
pub fn resolve(spec: &str, users: &[User], groups: &[Group]) -> Option<Account> {
    let user = users.iter().find(|u| u.name == spec).cloned().or_else(|| {
        let uid: u32 = spec.parse().ok()?;
        Some(
            users
                .iter()
                .find(|u| u.uid == uid)
                .cloned()
                .unwrap_or(User {
                    name: spec.to_string(),
                    uid,
                    gid: uid,
                    home: "/".to_string(),
                    shell: String::new(),
                }),
        )
    })?;
    let mut gids = vec![user.gid];
    for g in groups {
        if g.members.contains(&user.name) && !gids.contains(&g.gid) {
            gids.push(g.gid);
        }
    }
    Some(Account { user, groups: gids })
}

pub fn by_uid(uid: u32, users: &[User]) -> Option<&User> {
    users.iter().find(|u| u.uid == uid)
}

/// Read both files; a missing group file only means no supplementary groups.
pub fn load(passwd: &Path, group: &Path) -> std::io::Result<(Vec<User>, Vec<Group>)> {
    let users = parse_passwd(&std::fs::read_to_string(passwd)?);
    let groups = match std::fs::read_to_string(group) {
        Ok(t) => parse_group(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok((users, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// spec → (uid, gid, groups, home)
    type Case = (
        &'static str,
        Option<(u32, u32, &'static [u32], &'static str)>,
    );

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        \n\
        _apt:x:100:65534::/nonexistent:/usr/sbin/nologin\n\
        astro:x:50000:50000::/home/astro:/bin/bash\r\n\
        broken:x:notanumber:1::/:/bin/sh\n\
        short:x:1:1\n\
        +nis\n\
        dup:x:50000:7::/dup:/bin/sh\n";
    const GROUP_TEXT: &str = "root:x:0:\n\
        astro:x:50000:\n\
        astrogroup:x:101:astro\n\
        extra:x:102:nobody,astro,other\n\
        again:x:50000:astro\n\
        bad:x:zz:astro\n";

    #[test]
    fn passwd_parsing() {
        let users = parse_passwd(PASSWD_TEXT);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "_apt", "astro", "dup"]);
        assert_eq!(users[2].home, "/home/astro");
        assert_eq!(users[2].shell, "/bin/bash");
        assert_eq!(users[1].gid, 65534);
    }

    #[test]
    fn group_parsing() {
        let groups = parse_group(GROUP_TEXT);
        assert_eq!(groups.len(), 5);
        assert_eq!(groups[3].members, ["nobody", "astro", "other"]);
        assert!(groups[0].members.is_empty());
    }

    #[test]
    fn resolution_table() {
        let users = parse_passwd(PASSWD_TEXT);
        let groups = parse_group(GROUP_TEXT);
        let cases: &[Case] = &[
            (
                "astro",
                Some((50000, 50000, &[50000, 101, 102], "/home/astro")),
            ),
            (
                "50000",
                Some((50000, 50000, &[50000, 101, 102], "/home/astro")),
            ),
            ("root", Some((0, 0, &[0], "/root"))),
            ("0", Some((0, 0, &[0], "/root"))),
            ("_apt", Some((100, 65534, &[65534], "/nonexistent"))),
            ("4242", Some((4242, 4242, &[4242], "/"))),
            ("nosuchuser", None),
            ("", None),
            ("-1", None),
        ];
        for (spec, want) in cases {
            let got = resolve(spec, &users, &groups);
            match (want, got) {
                (None, None) => {}
                (Some((uid, gid, gids, home)), Some(a)) => {
                    assert_eq!((a.user.uid, a.user.gid), (*uid, *gid), "{spec}");
                    assert_eq!(a.groups, *gids, "{spec}");
                    assert_eq!(a.user.home, *home, "{spec}");
                }
                (w, g) => panic!("{spec}: want {w:?}, got {g:?}"),
            }
        }
    }
}
