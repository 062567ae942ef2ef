"""Characters to indices, as in the lesson: the sorted distinct characters, with \\0 first as padding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from zoo.errors import ZooError

PAD = "\0"
SURROGATES = ("\ud800", "\udfff")  # the first and last: halves of a UTF-16 pair, never characters on their own


class Vocab:
    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars or chars[0] != PAD:
            raise ZooError("a vocabulary must start with the \\0 padding character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ZooError("a vocabulary must be distinct single characters")
        # UTF-8 text never decodes to a lone surrogate, so no text zoo reads holds one, and none can be printed
        surrogate = next((c for c in chars if SURROGATES[0] <= c <= SURROGATES[1]), None)
        if surrogate is not None:
            raise ZooError(f"a vocabulary must be characters of text; it holds the lone surrogate {surrogate!r}")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls([PAD, *sorted(set(text) - {PAD})])

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.chars == self.chars

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise ZooError(f"character {exc.args[0]!r} is not in the model's vocabulary of {len(self)} characters") from None

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that the vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)
