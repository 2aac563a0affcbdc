"""English for any category name: plurals, the singular noun phrase, and the indefinite article.

Category names come from the source (COCO's 80, a JSONL file's own), so the rules must hold for names nobody
listed: regular rules for the head noun, the irregulars and uncountables English has, and names that are already
plural ("skis", "scissors") or mass nouns ("broccoli") turned into countable phrases ("pairs of skis", "pieces of
broccoli"). A library such as ``inflect`` pluralises "skis" as "skiss"; these rules know the difference.
"""

from __future__ import annotations

from functools import lru_cache

# Nouns whose plural is not made by a rule.
IRREGULAR_PLURALS = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "mouse": "mice",
    "goose": "geese",
    "tooth": "teeth",
    "foot": "feet",
    "ox": "oxen",
    "die": "dice",
    "cactus": "cacti",
    "knife": "knives",
    "leaf": "leaves",
    "shelf": "shelves",
    "wolf": "wolves",
    "calf": "calves",
    "half": "halves",
    "loaf": "loaves",
    "scarf": "scarves",
    "thief": "thieves",
    "wife": "wives",
    "life": "lives",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "hero": "heroes",
    "echo": "echoes",
    "volcano": "volcanoes",
    "mango": "mangoes",
    "quiz": "quizzes",
}
# Nouns whose plural is the singular.
UNCHANGED_PLURALS = {"sheep", "deer", "fish", "moose", "bison", "aircraft", "salmon", "trout", "shrimp", "species"}
# Names of one thing that are plural in form: one is "a pair of" them.
PAIRED_NOUNS = {
    "skis",
    "scissors",
    "glasses",
    "sunglasses",
    "eyeglasses",
    "goggles",
    "pants",
    "jeans",
    "trousers",
    "shorts",
    "headphones",
    "binoculars",
    "tongs",
    "pliers",
}
# Mass nouns a source may still box one piece at a time: counted as pieces.
MASS_NOUNS = {"broccoli", "cauliflower", "lettuce", "bread", "cheese", "meat", "furniture", "luggage", "food"}
# Words ending in "man" that are not compounds of "man".
_NOT_MAN = {"human", "german", "shaman", "talisman", "caiman", "ottoman", "walkman", "roman", "cayman"}
# Words that start with a vowel letter but a consonant sound, and the reverse.
_CONSONANT_SOUND = ("uni", "use", "usu", "ute", "uti", "eu", "ewe", "one", "once", "ubiq")
_VOWEL_SOUND = ("hour", "honest", "honou", "heir")
_VOWEL_LETTERS = ("a", "e", "i", "o", "u")
# Initialisms spoken letter by letter: "an SUV", "a TV".
_VOWEL_SOUND_LETTERS = set("aefhilmnorsx")


def _head(name: str) -> tuple[str, str, str]:
    """Split a name around the noun that takes the number: the last word, or the word before " of "."""
    if " of " in name:
        before, _, after = name.partition(" of ")
        head_prefix, _, head = before.rpartition(" ")
        return (head_prefix + " " if head_prefix else ""), head, " of " + after
    prefix, _, head = name.rpartition(" ")
    return (prefix + " " if prefix else ""), head, ""


def _plural_word(word: str) -> str:
    lower = word.lower()
    if lower in IRREGULAR_PLURALS:
        plural = IRREGULAR_PLURALS[lower]
        return plural if word.islower() else word[: len(word) - len(lower)] + plural
    if lower in UNCHANGED_PLURALS:
        return word
    if lower.endswith("man") and lower not in _NOT_MAN:
        return word[:-3] + "men"
    if word.isupper():  # an initialism: TV -> TVs
        return word + "s"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if lower.endswith("y") and lower[-2:-1] not in _VOWEL_LETTERS:
        return word[:-1] + "ies"
    return word + "s"


@lru_cache(maxsize=4096)  # a source has few names; templates ask for them again and again
def plural(name: str) -> str:
    """The plural of a name: "dog" -> "dogs", "wine glass" -> "wine glasses", "skis" -> "pairs of skis"."""
    prefix, head, rest = _head(name)
    if head.lower() in PAIRED_NOUNS:
        return f"pairs of {name}"
    if head.lower() in MASS_NOUNS:
        return f"pieces of {name}"
    return prefix + _plural_word(head) + rest


# Plurals the rules below would get wrong ("buses" is not the plural of "buse", though "houses" is of "house").
_SINGULARS = {
    **{plural: word for word, plural in IRREGULAR_PLURALS.items()},
    **{word + "es": word for word in ("bus", "gas", "lens", "canvas", "iris", "atlas", "walrus", "cactus")},
}


def singular_noun(word: str) -> str:
    """The singular of a plural noun, the inverse of ``plural`` for one word: "dogs" -> "dog", "boxes" -> "box",
    "berries" -> "berry", "people" -> "person"; a singular, paired or mass noun comes back as it is."""
    lower = word.lower()
    if lower in _SINGULARS:
        return _SINGULARS[lower]
    if lower in UNCHANGED_PLURALS or lower in PAIRED_NOUNS or lower in MASS_NOUNS:
        return word
    if lower.endswith("men") and lower[:-3] + "man" not in _NOT_MAN and len(lower) > 3:
        return word[:-3] + "man"
    if lower.endswith("ies") and len(lower) > 4:
        return word[:-3] + "y"
    if lower.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(lower) > 3:
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def singular(name: str) -> str:
    """The name as one countable thing: "red skis" -> "pair of red skis"; most names are already that."""
    return f"pair of {name}" if _head(name)[1].lower() in PAIRED_NOUNS else name


@lru_cache(maxsize=4096)
def article(phrase: str) -> str:
    """ "a" or "an" before ``phrase``, by its sound: "an apple", "a unicycle", "an hour", "an SUV", "a TV"."""
    word = phrase.split(" ", 1)[0]
    lower = word.lower()
    if word.isupper() and len(word) > 1:
        return "an" if lower[0] in _VOWEL_SOUND_LETTERS else "a"
    if lower.startswith(_VOWEL_SOUND):
        return "an"
    if lower.startswith(_CONSONANT_SOUND):
        return "a"
    return "an" if lower.startswith(_VOWEL_LETTERS) else "a"


def from_plural(many: str) -> str:
    """The name whose plural is ``many``: "people" -> "person", "wine glasses" -> "wine glass", "pairs of skis" ->
    "skis"; ``many`` itself when no rule leads back to it."""
    for counted in ("pairs of ", "pieces of "):
        if many.startswith(counted):
            return many[len(counted) :]
    prefix, head, rest = _head(many)
    lower = head.lower()
    irregular = [word for word, plural_form in IRREGULAR_PLURALS.items() if plural_form == lower]
    for word in [*irregular, head[:-3] + "y", head[:-3] + "man", head[:-2], head[:-1], head]:
        name = prefix + word + rest
        if word and plural(name) == many:
            return name
    return many
