"""Parser errors in words a seller reads, the parser's own words after them for the curious.

ruamel and Jinja describe what their grammar expected (`expected <block end>, but found '-'`, `chunk after
expression`); a person editing rules.yaml wants to know what they wrote wrong and how to fix it. Each translation
is matched on the parser's message, so one we do not know still reads as before, only without the translation.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.error import MarkedYAMLError

# Quoted strings removed first: a `=` inside "a=b" is text, not an operator.
_STRINGS = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""")
_OPERATOR_TYPOS = (
    (re.compile(r"==="), "`===` is not an operator here: write `==`"),
    (re.compile(r"=>"), "`=>` is not an operator: write `>=`"),
    (re.compile(r"=<"), "`=<` is not an operator: write `<=`"),
    (re.compile(r"=!"), "`=!` is not an operator: write `!=`"),
    (re.compile(r"(?<![=!<>])=(?!=)"), "a single `=` where `==` was meant: `=` cannot compare, write `==`"),
)


def _parser_says(words: str, said: str) -> str:
    return f"{words} (the parser says: {said})"


def yaml_error(exc: MarkedYAMLError) -> tuple[tuple[int, int], str]:
    """Where the mistake is (1-based line, column) and what to do about it."""
    problem, context = str(exc.problem or ""), str(exc.context or "")
    said = f"{problem}, {context}" if problem and context else problem or context
    mark = exc.problem_mark or exc.context_mark
    opened = exc.context_mark
    words = _yaml_words(problem, context, opened)
    if "quoted scalar" in context and opened is not None:
        mark = opened  # an unclosed quote: where it opens, not the end of the file where the parser noticed
    where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return where, "YAML syntax error: " + (_parser_says(words, said) if words else said)


def _yaml_words(problem: str, context: str, opened: Any) -> str | None:
    at = f" (opened at line {opened.line + 1} column {opened.column + 1})" if opened is not None else ""
    if "found '-'" in problem and "block end" in problem:
        return "a list item ('-') where a key was expected: check the indentation"
    if "block end" in problem and "start>" in problem:
        return "this line is indented differently from the lines above it: keys of one mapping start in one column"
    if problem.startswith("mapping values are not allowed"):
        return "a ':' where none can be: quote a value that contains ': ', or check the indentation of this key"
    if "'\\t'" in problem:
        return "a tab: YAML indents with spaces only"
    if found := re.match(r"found character '(.)' that cannot start any token", problem):
        return f"a value that starts with {found.group(1)!r} must be in quotes"
    if problem.startswith("found duplicate key") and (key := re.search(r'key "([^"]*)"', problem)):
        return f"the key {key.group(1)!r} appears twice in the same mapping: keep one"
    if "quoted scalar" in context and "end of stream" in problem:
        return "a quote that is never closed"
    if "flow sequence" in context:
        return f"a list in [ ] that is not closed, or whose items are not separated by commas{at}"
    if "flow mapping" in context:
        return (
            f"a mapping in {{ }} that is not closed, or whose entries are not separated by commas{at}; "
            'a template value such as {{ event.email }} must be in quotes: "{{ event.email }}"'
        )
    if "could not find expected ':'" in problem:
        return "a key without ':' after it, or a quote that is never closed"
    if "unknown escape character" in problem:
        return "a backslash in a double-quoted value: use single quotes, or write it twice (\\\\)"
    if "undefined alias" in problem:
        return "a value that starts with '*' reads as a YAML alias: put it in quotes"
    return None


def expression_words(source: str, message: str) -> str:
    """An `if:` expression's syntax error, in words."""
    # Strings blanked to the same length, so an offset in `code` is one in `source`.
    code = _STRINGS.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', source)
    if message.startswith(("chunk after expression", "unexpected '='")):
        for pattern, typo in _OPERATOR_TYPOS:
            if found := pattern.search(code):
                before = source[: found.start()].strip()
                where = f" (after `{before[-40:]}`)" if before else ""
                return _parser_says(typo + where, message)
    words: str | None = None
    if "'&'" in message:
        words = "`&&` is not Jinja: write `and`"
    elif message == "expected token 'name', got '|'" and "||" in code:
        words = "`||` is not Jinja: write `or`"
    elif "unexpected char '!'" in message:
        words = "`!` alone is not Jinja: write `not` (and `!=` for not equal)"
    elif message.startswith("unexpected char '\"'") or message.startswith('unexpected char "\'"'):
        words = "a quote that is never closed"
    elif "end of template" in message:
        words = "the expression stops too early: a value is missing after an operator, or a ( [ or quote is not closed"
    elif message == "unexpected ')'":
        words = "a ')' with no '(' before it"
    elif message.startswith("chunk after expression"):
        words = (
            "two values side by side: an operator (==, and, or) is missing between them, or a name after a '.' does "
            "not start with a letter (write event['1x'] instead)"
        )
    elif message.startswith("No test named"):
        words = '`is` checks a kind (is defined, is none); to compare with a value, write == "value"'
    return _parser_says(words, message) if words else message


def template_words(message: str) -> str:
    """A template's syntax error, in words."""
    words: str | None = None
    if message == "unexpected '}'":
        words = "a '}' that closes nothing: a template is written {{ event.name }}, two braces each side"
    elif message == "unexpected 'end of template'":
        words = "a {{ or {% that is never closed"
    elif message == "expected token 'end of print statement', got '='":
        words = "a '=' inside {{ }}: a template shows a value; to compare, write =="
    elif message.startswith("expected token 'end of print statement'"):
        words = "two values side by side inside {{ }}: join them with ~, or give each its own {{ }}"
    elif message.startswith("Unexpected end of template. Jinja was looking for"):
        words = "a {% if %} (or another block) that is never closed: add its {% endif %}"
    elif message.startswith("Expected an expression"):
        words = "an empty {{ }}: put the value to show inside, e.g. {{ event.email }}"
    return _parser_says(words, message) if words else message
