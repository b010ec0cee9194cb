//! The console's language: PgBouncer's admin commands plus pgvigil's own
//! SHOW QUERIES / SLOW / N_PLUS_ONE / ADVICE. Case-insensitive words, an optional
//! trailing semicolon, nothing else.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    Pools,
    Clients,
    Servers,
    Stats,
    StatsTotals,
    StatsAverages,
    Databases,
    Config,
    Version,
    Users,
    Lists,
    Queries,
    Slow,
    NPlusOne,
    Health,
    Markers,
    Advice,
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Reload,
    Shutdown,
    /// psql and drivers may send these around their own queries; the
    /// console has no transactions, so they succeed and change nothing.
    Ignored(&'static str),
}

impl Command {
    /// Whether a stats user (SHOW only) may run it.
    pub fn read_only(&self) -> bool {
        matches!(self, Command::Show(_) | Command::Ignored(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

pub fn parse(text: &str) -> Result<Command, ParseError> {
    let trimmed = text.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    let unknown = || {
        ParseError(format!(
            "invalid command \"{}\": see SHOW HELP",
            trimmed.chars().take(80).collect::<String>()
        ))
    };
    let rest = trimmed
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim());
    let database = || -> Result<Option<String>, ParseError> {
        if rest.is_empty() {
            Ok(None)
        } else if rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"') {
            Ok(Some(rest[1..rest.len() - 1].replace("\"\"", "\"")))
        } else if rest.contains(char::is_whitespace) {
            Err(unknown())
        } else {
            Ok(Some(rest.to_string()))
        }
    };
    match upper.as_slice() {
        ["SHOW", what] => {
            let show = match *what {
                "POOLS" => Show::Pools,
                "CLIENTS" => Show::Clients,
                "SERVERS" => Show::Servers,
                "STATS" => Show::Stats,
                "STATS_TOTALS" => Show::StatsTotals,
                "STATS_AVERAGES" => Show::StatsAverages,
                "DATABASES" => Show::Databases,
                "CONFIG" => Show::Config,
                "VERSION" => Show::Version,
                "USERS" => Show::Users,
                "LISTS" => Show::Lists,
                "QUERIES" => Show::Queries,
                "SLOW" => Show::Slow,
                "N_PLUS_ONE" => Show::NPlusOne,
                "HEALTH" => Show::Health,
                "MARKERS" => Show::Markers,
                "ADVICE" => Show::Advice,
                "HELP" => Show::Help,
                _ => return Err(unknown()),
            };
            Ok(Command::Show(show))
        }
        ["PAUSE", ..] => database().map(Command::Pause),
        ["RESUME", ..] => database().map(Command::Resume),
        ["RELOAD"] => Ok(Command::Reload),
        ["SHUTDOWN"] => Ok(Command::Shutdown),
        ["BEGIN"] => Ok(Command::Ignored("BEGIN")),
        ["COMMIT"] => Ok(Command::Ignored("COMMIT")),
        ["ROLLBACK"] => Ok(Command::Ignored("ROLLBACK")),
        ["SET", ..] => Ok(Command::Ignored("SET")),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_case_insensitive_and_may_end_with_a_semicolon() {
        assert_eq!(parse("show pools;"), Ok(Command::Show(Show::Pools)));
        assert_eq!(
            parse("  SHOW   N_PLUS_ONE "),
            Ok(Command::Show(Show::NPlusOne))
        );
        assert_eq!(parse("show markers;"), Ok(Command::Show(Show::Markers)));
        assert_eq!(parse("Reload"), Ok(Command::Reload));
    }

    #[test]
    fn pause_and_resume_take_an_optional_database() {
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(
            parse("pause appdb;"),
            Ok(Command::Pause(Some("appdb".into())))
        );
        assert_eq!(
            parse("RESUME \"App DB\""),
            Ok(Command::Resume(Some("App DB".into())))
        );
        assert!(parse("PAUSE a b").is_err());
    }

    #[test]
    fn anything_else_is_refused_with_a_pointer_to_help() {
        let err = parse("SELECT 1").unwrap_err();
        assert!(err.0.contains("SHOW HELP"), "{err:?}");
        assert!(parse("SHOW TABLES").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn only_show_commands_are_read_only() {
        assert!(parse("SHOW STATS").unwrap().read_only());
        assert!(!parse("PAUSE").unwrap().read_only());
        assert!(!parse("SHUTDOWN").unwrap().read_only());
    }
}
