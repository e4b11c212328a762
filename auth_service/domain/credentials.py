"""What a valid email and a good enough password are; pure rules, no I/O.

Emails are compared in one canonical form: Unicode NFKC (so a fullwidth a, U+FF41, is an a),
checked and normalised by email-validator (no DNS look-up), local part in ASCII only (no
SMTPUTF8, so a Cyrillic a, U+0430, cannot pose as a Latin one), no domain label mixing Latin with
other letters, and all of it in lower case. Passwords follow NIST SP 800-63B: a minimum
length, no maximum below 64, no composition rules, but screened against a list of common
passwords, repetitive or sequential ones, and ones built on the account's own email (what
is left without the email or its local part must still be long enough)."""

from __future__ import annotations

import itertools
import unicodedata

from email_validator import EmailNotValidError, validate_email
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MAX_EMAIL_LENGTH = 254
MAX_PASSWORD_LENGTH = 128
# The 30,000 most common passwords of leaked password sets, as the zxcvbn package ships them.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
MIN_DISTINCT_CHARACTERS = 4


class EmailProblem(ValueError):
    pass


def _mixes_latin(label: str) -> bool:
    """Latin letters beside letters of another alphabet (a Unicode name's first word)."""
    scripts = {unicodedata.name(c, "?").split()[0] for c in label if c.isalpha()}
    return "LATIN" in scripts and len(scripts) > 1


def canonical_email(text: str) -> str:
    """The one form an email is stored and compared in; EmailProblem when it is not one."""
    text = unicodedata.normalize("NFKC", text.strip())
    if not text:
        raise EmailProblem("must not be empty")
    if len(text) > MAX_EMAIL_LENGTH:
        raise EmailProblem(f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise EmailProblem(f"must be an email address ({error})") from None
    if any(_mixes_latin(label) for label in valid.domain.split(".")):
        raise EmailProblem("must not mix Latin letters with look-alikes from other alphabets")
    return f"{valid.local_part}@{valid.domain}".lower()


def lookup_email(text: str) -> str:
    """The canonical form for a sign-in; an email that cannot be valid just finds nobody."""
    try:
        return canonical_email(text)
    except EmailProblem:
        return unicodedata.normalize("NFKC", text.strip()).lower()


def _is_sequence(password: str) -> bool:
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(password)}
    return steps in ({1}, {-1})


def password_problem(password: str, email: str, min_length: int) -> str | None:
    if len(password) < min_length:
        return f"must be at least {min_length} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    if password.strip() != password:
        return "must not start or end with whitespace"
    folded = password.casefold()
    if folded in COMMON_PASSWORDS:
        return "is one of the most common passwords; choose another"
    if len(set(folded)) < MIN_DISTINCT_CHARACTERS or _is_sequence(folded):
        return "is too repetitive or sequential; choose another"
    if len(_without_email(folded, email.casefold())) < min_length:
        return "must not be built on the email address"
    return None


def _without_email(password: str, email: str) -> str:
    """What is left of the password once the email and its local part are taken out."""
    local = email.partition("@")[0]
    for part in (email, local):
        if len(part) >= 3:
            password = password.replace(part, "")
    return password
