//! The publish planner: pure, from "what the registry has" (per flavour, the identity each tag holds) to the tag
//! actions of one repository, in execution order (docs/publishing.md has the rules; `publish` acts on the steps).

use crate::release::{Flavour, TagScheme};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Immutable,
    Ci,
    Floating,
}

/// One flavour as this run wants it.
#[derive(Debug, Clone)]
pub struct Want {
    pub flavour: Flavour,
    /// The image IDs of the flavour's platforms (`IndexedImage::identity`): what the registry's tags are compared on.
    pub identity: String,
    pub build: u32,
    /// The line's tag scheme: which of a repository's tags are other builds of this flavour.
    pub scheme: TagScheme,
    pub immutable: String,
    pub floating: String,
    pub ci: Option<String>,
}

/// What a repository holds for one flavour: per tag, the identity (image IDs) of what it points at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Have {
    pub immutable: Option<String>,
    pub floating: Option<String>,
    pub ci: Option<String>,
    /// Highest N among the repository's `<airflow>-<N>-<distro><suffix>` tags.
    pub highest_build: Option<u32>,
    /// The build whose immutable tag the floating tag equals (the highest if several), when any.
    pub floating_build: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub dev: bool,
    pub move_floating: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// New immutable tag: blobs, then the manifest.
    Publish,
    /// Put the manifest under a tag that is absent or points elsewhere.
    Tag {
        from: Option<String>,
        why: String,
    },
    Skip(String),
    /// Nothing is written to the repository. `cascaded`: refused because another tag of the repository is.
    Refuse {
        reason: String,
        cascaded: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub flavour: Flavour,
    pub kind: TagKind,
    pub tag: String,
    pub identity: String,
    pub action: Action,
}

/// The steps for one repository, in execution order. When any step is a refusal, every step is (nothing is written).
pub fn plan(wants: &[Want], haves: &[Have], policy: Policy) -> Vec<Step> {
    let mut steps = Vec::new();
    for (w, h) in wants.iter().zip(haves) {
        let step = |kind, tag: &str, action| Step {
            flavour: w.flavour,
            kind,
            tag: tag.to_owned(),
            identity: w.identity.clone(),
            action,
        };
        let newly = h.immutable.is_none();
        steps.push(step(
            TagKind::Immutable,
            &w.immutable,
            match &h.immutable {
                None => Action::Publish,
                Some(d) if *d == w.identity => {
                    Action::Skip("already published with this image ID".into())
                }
                Some(d) => Action::Refuse {
                    reason: format!(
                        "{} already holds image {d}, the local image is {} (a rebuild needs a new build number)",
                        w.immutable, w.identity
                    ),
                    cascaded: false,
                },
            },
        ));
        if let Some(ci) = &w.ci {
            steps.push(step(
                TagKind::Ci,
                ci,
                match &h.ci {
                    None => Action::Tag {
                        from: None,
                        why: "CI build".into(),
                    },
                    Some(d) if *d == w.identity => Action::Skip("already points here".into()),
                    Some(d) => Action::Refuse {
                        reason: format!("CI tag {ci} already holds another image ({d})"),
                        cascaded: false,
                    },
                },
            ));
        }
        let mv = |why: &str| Action::Tag {
            from: h.floating.clone(),
            why: why.to_owned(),
        };
        let floating = if policy.dev {
            Action::Skip("--dev never touches floating tags".into())
        } else if let Some(n) = h.highest_build.filter(|&n| n > w.build) {
            Action::Skip(format!(
                "build {n} of this line is newer; floating tags never move back"
            ))
        } else if h.floating.as_deref() == Some(&w.identity) {
            Action::Skip("already points here".into())
        } else if newly {
            mv("new build")
        } else if policy.move_floating {
            mv("--move-floating")
        } else if h.floating.is_none() {
            // What an interrupted first publish leaves: immutable tag written, floating tag not yet.
            mv("completing a publish: floating tag missing")
        } else if let Some(n) = h.floating_build.filter(|&n| n < w.build) {
            // What an interrupted publish of a new build leaves: floating tag still at the previous build.
            mv(&format!(
                "completing a publish: floating tag was at build {n}"
            ))
        } else {
            Action::Skip(
                "points to an image that is no older build of this line; --move-floating moves it"
                    .into(),
            )
        };
        steps.push(step(TagKind::Floating, &w.floating, floating));
    }
    if let Some(reason) = steps.iter().find_map(|s| match &s.action {
        Action::Refuse { reason, .. } => Some(reason.clone()),
        _ => None,
    }) {
        for s in &mut steps {
            if !matches!(s.action, Action::Refuse { .. }) {
                s.action = Action::Refuse {
                    reason: format!("repository refused: {reason}"),
                    cascaded: true,
                };
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:new";
    const OLD: &str = "sha256:old";
    const OTHER: &str = "sha256:other";

    fn want(ci: bool) -> Want {
        Want {
            flavour: Flavour::Base,
            identity: D.into(),
            build: 2,
            scheme: TagScheme::new("2.10.5", "bookworm"),
            immutable: "2.10.5-2-bookworm".into(),
            floating: "2.10.5-bookworm".into(),
            ci: ci.then(|| "2.10.5-bookworm-77".into()),
        }
    }

    fn have(
        immutable: Option<&str>,
        floating: Option<&str>,
        highest: Option<u32>,
        fbuild: Option<u32>,
    ) -> Have {
        Have {
            immutable: immutable.map(String::from),
            floating: floating.map(String::from),
            ci: None,
            highest_build: highest,
            floating_build: fbuild,
        }
    }

    /// (case, have, policy, immutable action, floating action) with actions as short words.
    fn word(a: &Action) -> &'static str {
        match a {
            Action::Publish => "publish",
            Action::Tag { .. } => "move",
            Action::Skip(_) => "skip",
            Action::Refuse { .. } => "refuse",
        }
    }

    #[test]
    fn decisions() {
        let p = Policy::default();
        let mf = Policy {
            move_floating: true,
            ..p
        };
        let dev = Policy { dev: true, ..p };
        let cases = [
            (
                "first publish",
                have(None, None, None, None),
                p,
                "publish",
                "move",
            ),
            (
                "new build over build 1",
                have(None, Some(OLD), Some(1), Some(1)),
                p,
                "publish",
                "move",
            ),
            (
                "re-publish",
                have(Some(D), Some(D), Some(2), Some(2)),
                p,
                "skip",
                "skip",
            ),
            (
                "rebuild under the same tag",
                have(Some(OTHER), Some(OTHER), Some(2), Some(2)),
                p,
                "refuse",
                "refuse",
            ),
            (
                "old build re-run after build 3",
                have(Some(D), Some(OTHER), Some(3), Some(3)),
                p,
                "skip",
                "skip",
            ),
            (
                "old build newly mirrored, 3 exists",
                have(None, Some(OTHER), Some(3), Some(3)),
                p,
                "publish",
                "skip",
            ),
            (
                "--move-floating cannot go back",
                have(Some(D), Some(OTHER), Some(3), Some(3)),
                mf,
                "skip",
                "skip",
            ),
            (
                "interrupted: floating still at 1",
                have(Some(D), Some(OLD), Some(2), Some(1)),
                p,
                "skip",
                "move",
            ),
            (
                "interrupted: floating missing",
                have(Some(D), None, Some(2), None),
                p,
                "skip",
                "move",
            ),
            (
                "floating at an unknown image",
                have(Some(D), Some(OTHER), Some(2), None),
                p,
                "skip",
                "skip",
            ),
            (
                "... moved with --move-floating",
                have(Some(D), Some(OTHER), Some(2), None),
                mf,
                "skip",
                "move",
            ),
            (
                "dev first publish",
                have(None, None, None, None),
                dev,
                "publish",
                "skip",
            ),
            (
                "dev rebuild is refused too",
                have(Some(OTHER), None, Some(2), None),
                dev,
                "refuse",
                "refuse",
            ),
        ];
        for (case, h, policy, imm, fl) in cases {
            let steps = plan(&[want(false)], &[h], policy);
            assert_eq!(steps.len(), 2, "{case}");
            assert_eq!(steps[0].kind, TagKind::Immutable);
            assert_eq!(steps[1].kind, TagKind::Floating);
            assert_eq!(
                (word(&steps[0].action), word(&steps[1].action)),
                (imm, fl),
                "{case}"
            );
        }
    }

    #[test]
    fn ci_tags() {
        let mut h = have(None, None, None, None);
        let steps = plan(&[want(true)], &[h.clone()], Policy::default());
        let kinds: Vec<_> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [TagKind::Immutable, TagKind::Ci, TagKind::Floating],
            "order"
        );
        assert_eq!(word(&steps[1].action), "move");
        h.ci = Some(OTHER.into());
        let steps = plan(&[want(true)], &[h], Policy::default());
        assert!(steps
            .iter()
            .all(|s| matches!(s.action, Action::Refuse { .. })));
    }

    #[test]
    fn one_refusal_refuses_the_whole_repository() {
        let mut onbuild = want(false);
        onbuild.flavour = Flavour::Onbuild;
        let steps = plan(
            &[want(false), onbuild],
            &[
                have(None, None, None, None),
                have(Some(OTHER), None, Some(2), None),
            ],
            Policy::default(),
        );
        assert_eq!(steps.len(), 4);
        assert!(steps
            .iter()
            .all(|s| matches!(s.action, Action::Refuse { .. })));
        let Action::Refuse { reason, cascaded } = &steps[0].action else {
            unreachable!()
        };
        assert!(reason.contains("sha256:other"), "{reason}");
        assert!(
            cascaded,
            "the base flavour is refused because the onbuild one is"
        );
        assert!(matches!(
            steps[2].action,
            Action::Refuse {
                cascaded: false,
                ..
            }
        ));
    }
}
