"""Pick the console's language from an ``Accept-Language`` header."""

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "pick_language"]

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"


def pick_language(header: str | None) -> str:
    """The supported language the header prefers most (highest q, then first listed)."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (header or "").split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if primary in LANGUAGES and q > best_q and q > 0:
            best, best_q = primary, q
    return best
