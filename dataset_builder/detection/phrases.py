"""Object phrases from a caption: what the detector is asked to find, and what the objects it finds are called.

``rules`` (the default) is a deterministic noun-phrase chunker that needs no model: a phrase starts after an article,
a number, a possessive or a preposition ("a large white cloud", "of trees") and runs until a word that cannot be
inside a noun phrase (a preposition, a conjunction, a pronoun, a common verb, punctuation) or a participle that
ends it ("a dog *lying* on", "a man *holding* a cup"; but "a *sleeping* cat", "a *striped* umbrella"). It reads
descriptive captions such as DOCCI's well and misses what a tagger would catch (a verb it does not list, a noun
phrase with no article before it); ``tagger:MODEL`` chunks the part-of-speech tags of a ``transformers`` token
classification model instead (any tagger with Penn Treebank or Universal tags).

Either way each phrase becomes a ``Phrase``: the detector's ``query`` (the words as written, plural made singular,
at most ``MAX_QUERY_WORDS``), the object's ``name`` (the query without its colour words, at most ``MAX_NAME_WORDS``)
and its ``attributes`` (those colour words), so "two brown dogs" asks for "brown dog" and names a "dog" whose
colour is brown, which stage 1 can ask about. Phrases about the picture rather than a thing in it ("the top left
corner", "a close-up view") are dropped by their head noun (``NOT_OBJECTS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..synthesis.grammar import singular_noun
from ..synthesis.stage1 import COLOUR_WORDS

VERSION = 1  # of the rules: part of every detection's provenance
MAX_QUERY_WORDS = 4
MAX_NAME_WORDS = 3

_NUMBERS = "one two three four five six seven eight nine ten eleven twelve"
STARTERS = frozenset(
    f"""a an the this that these those its their his her my our your some several many few each every another both
    all any no multiple various numerous {_NUMBERS}""".split()
)
SINGULAR_STARTERS = frozenset("a an one this that each every another".split())
PREPOSITIONS = frozenset(
    """of on in at with without by from for into onto over under above below behind beside besides between
    beneath near inside outside through across along around against atop toward towards upon within among
    amongst throughout like via underneath past off up down out next""".split()
)
# Words that end a noun phrase without being part of it, besides starters and prepositions.
STOPS = frozenset(
    """and or but nor so yet as than then while whereas where which who whom whose what when how why if because
    although though that it they them he she him we us you i me there here is are was were be been being am has
    have had having do does did can could will would shall should may might must not very also just only almost
    nearly slightly mostly partially partly fully completely directly right left slightly somewhat too quite
    sits sit stands stand lies lie hangs hang rests rest appears appear seems seem looks look shows show holds
    hold covers cover contains contain features feature surrounds surround reflects reflect casts cast fills fill
    lines line extends extend rises rise runs run walks walk grows grow leans lean faces face reads read says say
    sticks stick leads lead goes go comes come wears wear carries carry points point touches touch overlooks
    overlook supports support blocks block creates create forms form makes make takes take gives give has visible
    seen shown located positioned placed to wait waits eat eats drive drives swim swims sleep sleeps pose poses
    gather gathers talk talks himself herself itself themselves""".split()
)
# Head nouns of phrases about the picture or a region of it, or about a quantity of something ("a group of").
NOT_OBJECTS = frozenset(
    """image picture photo photograph view shot close-up closeup scene frame side sides corner corners top bottom
    left right middle center centre front back rear background foreground edge edges part parts area areas
    portion portions half section sections distance direction angle perspective focus blur color colour colors
    colours shade shades shape shapes pattern patterns texture tone tones hue light lighting sunlight daylight
    shadow shadows reflection reflections group groups pair pairs couple lot lots number kind kinds type types
    sort variety piece pieces bunch set row rows line lines pile series collection cluster amount level way
    thing things something object objects item items end ends surface space spot time day""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


@dataclass(frozen=True)
class Phrase:
    query: str  # the text the detector is asked to find
    name: str  # what an object found for it is called
    attributes: tuple[str, ...] = ()  # the colour words of the query


def _boundary(token: str) -> bool:
    return not token[0].isalnum() or token in STOPS or token in STARTERS or token in PREPOSITIONS


def _verb_after_singular(token: str) -> bool:
    """After "a dog", a word in -s is a verb ("a dog *runs*", "a bus *stops*"): one dog is not "dogs"."""
    return token.endswith("s") and not token.endswith(("ss", "us", "is"))


def rule_chunks(caption: str) -> list[list[str]]:
    """The noun-phrase word runs of ``caption`` by the rules in the module docstring."""
    tokens = _WORD.findall(caption.lower())
    chunks, current, opener = [], [], None
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else "."
        ends = _boundary(token)
        if current and not ends:  # so do, after a first word, a verb in -ing, one in -ed before a boundary, and
            # a verb in -s after a singular opener
            ends = (
                (token.endswith("ing") and len(token) > 4)
                or (token.endswith("ed") and len(token) > 4 and _boundary(following))
                or (opener in SINGULAR_STARTERS and _verb_after_singular(token))
            )
        if ends:
            if current:
                chunks.append(current)
            current, opener = [], token if token in STARTERS or token in PREPOSITIONS else None
        elif opener:
            current.append(token)
    if current:
        chunks.append(current)
    return chunks


# Part-of-speech tags (Penn Treebank and Universal) by the role they play in a noun phrase.
_NOUN_TAGS = ("NN", "NOUN", "PROPN")
_MODIFIER_TAGS = ("JJ", "ADJ")


def tagged_chunks(words: list[tuple[str, str]]) -> list[list[str]]:
    """Noun phrases of tagged words: runs of adjectives and nouns, each cut after its last noun."""
    chunks, current = [], []
    for word, tag in [*words, ("", "")]:
        if tag.startswith(_NOUN_TAGS + _MODIFIER_TAGS):
            current += [(w, tag.startswith(_NOUN_TAGS)) for w in word.lower().split()]
            continue
        nouns = [i for i, (_, noun) in enumerate(current) if noun]
        if nouns:
            chunks.append([w for w, _ in current[: nouns[-1] + 1]])
        current = []
    return chunks


def phrase(words: list[str]) -> Phrase | None:
    """The ``Phrase`` of a chunk, or None when it names no object."""
    words = [w for w in words if w not in STARTERS]
    if not words:
        return None
    head = singular_noun(words[-1])
    if head in NOT_OBJECTS or words[-1] in NOT_OBJECTS or head in COLOUR_WORDS or len(head) < 3:
        return None
    if head.isdigit() or head.endswith("ly") or not head[0].isalpha():
        return None
    words = [*words[:-1], head][-MAX_QUERY_WORDS:]
    colours = tuple(dict.fromkeys(w for w in words if w in COLOUR_WORDS))
    name = [w for w in words if w not in COLOUR_WORDS][-MAX_NAME_WORDS:]
    return Phrase(" ".join(words), " ".join(name), colours)


def unique(phrases) -> list[Phrase]:
    """The phrases that name something, each once, in the order the caption first names them."""
    return list(dict.fromkeys(p for p in phrases if p is not None))


def rule_phrases(caption: str) -> list[Phrase]:
    return unique(phrase(chunk) for chunk in rule_chunks(caption))
