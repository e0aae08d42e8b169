"""Raw Avocado emails (RFC-822 bytes) to (subject, body), as LaMP-6 and LongLaMP-1 read them:
a fast path for plain ASCII messages, else the standard library's email parser."""

from __future__ import annotations

from email import policy
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from typing import cast


def _repair(text: str) -> str:
    """Undeclared 8-bit bytes arrive as surrogate escapes: decode them as UTF-8 or latin-1."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return _guess_decode(text.encode("utf-8", "surrogateescape"))


def _guess_decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def _part_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    charset = part.get_content_charset()
    if isinstance(payload, bytes) and charset in (None, "us-ascii") and not payload.isascii():
        return _guess_decode(payload)  # undeclared 8-bit text
    try:
        return _repair(str(part.get_content()))
    except (LookupError, UnicodeError, KeyError):  # unknown or lying charset
        if isinstance(payload, bytes):
            return _guess_decode(payload)
        return _repair(str(part.get_payload()))


_ASCII_CHARSETS = {None, "us-ascii", "ascii", "utf-8", "iso-8859-1", "latin-1", "windows-1252"}
_LEGACY = BytesParser(policy=policy.compat32)
_MODERN = BytesParser(policy=policy.default)


def _parse_plain_ascii(raw: bytes) -> tuple[str, str] | None:
    """The common Avocado email (ASCII, one text/plain part, no encoded words), parsed by the
    light compat32 policy; None sends anything else to the full parser. Both give the same
    result on these emails (a test checks it)."""
    if not raw.isascii():
        return None
    message = _LEGACY.parsebytes(raw)
    if message.is_multipart() or message.get_content_type() != "text/plain":
        return None
    if message.get_content_charset() not in _ASCII_CHARSETS:
        return None
    encoding = str(message.get("content-transfer-encoding", "7bit")).strip().lower()
    if encoding not in ("7bit", "8bit", "binary") or message.get_content_disposition():
        return None
    subject = message.get("subject")
    if subject is not None and not isinstance(subject, str) or "=?" in str(subject or ""):
        return None
    payload = message.get_payload()
    if not isinstance(payload, str):
        return None
    return " ".join((subject or "").split()), payload.strip()


def parse_email(raw: bytes) -> tuple[str, str]:
    """(subject, body) of an RFC-822 email.

    Parsed with the standard library (``email.policy.default``): the subject is decoded
    (RFC 2047) and unfolded; the body is the text/plain parts joined by newlines (the text/html
    parts when there is no plain text), transfer encodings and charsets decoded, undeclared
    8-bit text read as UTF-8 or else latin-1, and surrounding whitespace stripped.
    """
    simple = _parse_plain_ascii(raw)
    return simple if simple is not None else parse_email_fully(raw)


def parse_email_fully(raw: bytes) -> tuple[str, str]:
    message = cast(EmailMessage, _MODERN.parsebytes(raw))
    subject_header = message.get("subject")
    subject = str(subject_header) if subject_header is not None else ""
    if "\ufffd" in subject:  # undeclared 8-bit header bytes: the parser replaced them
        ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
        head = _guess_decode(raw[: min(ends)] if ends else raw)
        decoded = Parser(policy=policy.default).parsestr(head, headersonly=True)
        subject = str(decoded.get("subject", ""))
    subject = " ".join(subject.split())
    plain: list[str] = []
    html: list[str] = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()  # text/plain when the header is missing
        if kind == "text/plain":
            plain.append(_part_text(cast(EmailMessage, part)))
        elif kind == "text/html":
            html.append(_part_text(cast(EmailMessage, part)))
    body = "\n".join(plain or html).strip()
    return subject, body


# LongLaMP-1's script reads each email with the ``mailparser`` package and takes its
# ``subject`` and ``body``; the body joins every text part with this line.
MAIL_BOUNDARY = "\n--- mail_boundary ---\n"


def parse_email_as_mailparser(raw: bytes) -> tuple[str, str]:
    """(subject, body) of an RFC-822 email as the ``mailparser`` package gives them, which
    LongLaMP's ``data/avocado/create_avocado_dataset.py`` reads (``mail.subject``,
    ``mail.body``).

    - subject: the header's chunks decoded (RFC 2047 words in their charset, undecodable bytes
      dropped) and joined, then stripped; folding and inner spaces are kept as written;
    - body: every part that is not an attachment (no filename, not ``Content-Disposition:
      attachment``, not an rtf part, no Content-ID unless it is plain or html text), decoded
      in its charset (else UTF-8, else UTF-8 with replacements), empty ones left out: the
      text/plain parts, then the text/html parts, then any other, joined by ``MAIL_BOUNDARY``.
      A plain single-part email's body is its text, as with ``parse_email``.
    """
    message = cast(Message, _LEGACY.parsebytes(raw))
    header = message.get("subject")
    subject = ""
    if header:
        try:
            for chunk, charset in decode_header(str(header)):
                subject += (
                    chunk.decode(charset or "utf-8", "ignore")
                    if isinstance(chunk, bytes)
                    else chunk
                )
        except (LookupError, UnicodeError, ValueError):
            subject = str(header)
    texts: dict[str, list[str]] = {"plain": [], "html": [], "other": []}
    for part in message.walk():
        if part.is_multipart():
            continue
        subtype = part.get_content_subtype()
        if (
            part.get_filename()
            or part.get_content_disposition() == "attachment"  # lowercased by the parser
            or subtype == "rtf"
            or (part.get("content-id") and subtype not in ("html", "plain"))
        ):
            continue  # what mailparser takes for an attachment
        text = _mailparser_text(part, part.get_content_charset("utf-8"))
        if text:
            texts[subtype if subtype in ("plain", "html") else "other"].append(text)
    body = MAIL_BOUNDARY.join(texts["plain"] + texts["html"] + texts["other"])
    return subject.strip(), body


def _mailparser_text(part: Message, charset: str) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    for codec in (charset, "utf-8"):
        try:
            return payload.decode(codec)
        except (LookupError, UnicodeError):
            continue
    return payload.decode("utf-8", "replace")
