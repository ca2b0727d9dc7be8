"""docs/fr/guide.md keeps up with docs/guide.md, and quotes the brief where students need it."""

from pathlib import Path

import pytest
from tools.docs_gen.examples import normalise
from tools.docs_gen.translation import TRANSLATIONS, example_blocks, heading_levels

ROOT = Path(__file__).resolve().parents[2]
PAIRS = list(TRANSLATIONS.items())
IDS = [str(translation.relative_to(ROOT)) for _, translation in PAIRS]
FRENCH = ROOT / "docs" / "fr" / "guide.md"

# The brief's questions, word for word (lmendiboure/RenderIoTAPI, README.md).
BRIEF_QUESTIONS = [
    "Que permettent ils de récupérer ? Quels sont les clients existants ? Les objets ?",
    "Pourquoi est-il important d'associer l'API key au client ?",
    "Comment utiliser `request.client_id` dans les endpoints pour personnaliser les réponses ?",
    "Que se passe-t-il si un client tente d'utiliser la clé d'un autre client ?",
]
GLOSSARY = [
    "hystérésis", "z-score", "disjoncteur", "circuit breaker", "WAL", "backfill", "cgroup", "mTLS",
    "outbox", "idempotence", "HPA",
]  # fmt: skip


@pytest.mark.parametrize(("source", "translation"), PAIRS, ids=IDS)
def test_same_sections(source: Path, translation: Path) -> None:
    """Both guides have the same headings, at the same levels, in the same order."""
    assert heading_levels(translation) == heading_levels(source)


@pytest.mark.parametrize(("source", "translation"), PAIRS, ids=IDS)
def test_same_examples_and_outputs(source: Path, translation: Path) -> None:
    """Same runnable blocks and docker set-ups, word for word; same shown outputs, under the placeholders."""
    theirs, ours = example_blocks(source), example_blocks(translation)
    assert [b.info for b in ours] == [b.info for b in theirs]
    for mine, original in zip(ours, theirs, strict=True):
        if mine.is_output:
            assert normalise(mine.code) == normalise(original.code), f"{mine.where} vs {original.where}"
        else:
            assert mine.code == original.code, f"{mine.where} vs {original.where}"


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("question", BRIEF_QUESTIONS)
def test_french_guide_quotes_each_brief_question(question: str) -> None:
    """Each question of the brief appears word for word, with an answer right after it."""
    text = _flat(FRENCH.read_text())
    quoted = f"« {question} »"
    assert quoted in text
    assert "**Réponse" in text.split(quoted, 1)[1][:200]


def test_french_glossary_has_the_terms() -> None:
    """The French glossary explains every term the guide leans on."""
    glossary = FRENCH.read_text().split("\n## Glossaire\n", 1)[1].split("\n## ", 1)[0]
    assert [term for term in GLOSSARY if term not in glossary] == []


def test_readme_links_both_languages_at_the_top() -> None:
    """The README's first lines point to the English and the French guide."""
    top = "\n".join((ROOT / "README.md").read_text().split("\n")[:8])
    assert "(docs/guide.md)" in top and "(docs/fr/guide.md)" in top
