"""`check --live`: each account's key and Maton connection, then its rules' references, looked up (GET only).

Per account: when it goes through a named Maton connection, the connections API says whether it is ACTIVE; one
GET checks the key (a refusal is reported in the API's words, and that account's references are not read); then
the courses, communities, tags and contact fields its rules name are looked up in that account, each list read
only when a rule needs it. `--create-fields` creates the missing contact fields (the only writes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from app.accounts.registry import Account, AccountClients
from app.actions.resolve import same_tag
from app.config import setting_source
from app.maton.client import MatonClient, MatonError
from app.maton.service import connection_problem, find_connection, list_connections, several_active
from app.rules.loader import LoadedRules
from app.rules.problems import Problem, Severity
from app.rules.schema import CommunityAction, EnrollAction, Rule, TagAction, UnenrollAction, UpdateContactAction
from app.systeme import setup
from app.systeme.client import SystemeSession
from app.systeme.errors import AccountUnusable, ApiError, Forbidden

Index = tuple[set[int], dict[str, None]]  # ids, and names in the API's order (ascending ids)


@dataclass
class LiveReport:
    problems: list[Problem] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # what --create-fields did, one line each
    checked: list[str] = field(default_factory=list)  # the accounts that were read


def _literal(value: object) -> bool:
    return not (isinstance(value, str) and ("{{" in value or "{%" in value))


def _exists(reference: int | str, index: Index, *, fold: bool = False) -> bool:
    ids, names = index
    text = str(reference).strip()
    if text.isdigit():
        return int(text) in ids
    return text in names or (fold and any(same_tag(text, name) for name in names))


def _twins(name: str, index: Index) -> list[str]:
    """The tags that all match `name` once case is ignored, when there is more than one (an ambiguity), in the
    order the runner meets them (the first is used unless one matches exactly)."""
    matches = [found for found in index[1] if same_tag(found, name)]
    return matches if len(matches) > 1 else []


def field_slugs(rule: Rule) -> list[str]:
    """The contact field slugs a rule writes: its contact's `fields:` and its `update_contact` fields."""
    slugs = list(rule.contact.fields) if rule.contact is not None else []
    for action in rule.actions:
        if isinstance(action, UpdateContactAction):
            slugs += [s for s in action.fields if s not in slugs]
    return slugs


def rules_by_account(loaded: LoadedRules) -> dict[str, list[Rule]]:
    """Each account's rules: a rule acts on its own account, else its source's (each source of its `on`)."""
    uses: dict[str, list[Rule]] = defaultdict(list)
    for rule in loaded.file.rules:
        for account in dict.fromkeys(loaded.file.account_of(rule, on.partition("/")[0]) for on in rule.on):
            uses[account].append(rule)
    return uses


class _AccountCheck:
    """The lookups of one account, each list read once and only when a rule needs it."""

    def __init__(self, loaded: LoadedRules, report: LiveReport, name: str) -> None:
        self.loaded, self.report, self.name = loaded, report, name
        self._api: SystemeSession | None = None
        self.where = "the connected account" if name == "default" else f"account '{name}'"
        self._indexes: dict[str, Index] = {}
        self._fields: dict[str, str] | None = None
        self._created: dict[str, str | None] = {}  # slug -> why it could not be created (None: created)

    @property
    def api(self) -> SystemeSession:
        assert self._api is not None, "the account's key is checked first"
        return self._api

    def problem(self, message: str, severity: Severity = "error") -> None:
        # The settings' own account is not in the rules file: no rules.yaml:1:1 that would send a reader there.
        line, column = self.loaded.positions.get(f"account '{self.name}'", (0, 0))
        subject = f"account '{self.name}'"
        self.report.problems.append(Problem(self.loaded.path, line, column, subject, message, severity))

    def key(self, account: Account) -> str:
        """The key a refusal is about, named as a reader would change it."""
        if f"account '{self.name}'" in self.loaded.positions:
            return "its `connection` (with MATON_API_KEY)" if account.connection else "its `api_key`"
        setting = "MATON_API_KEY" if account.mode == "maton" else "SYSTEME_API_KEY"
        where = setting_source(setting)
        return setting + (f" (set in {where})" if where else "")

    async def account(
        self, clients: AccountClients, rules: list[Rule], *, maton: MatonClient | None, create_fields: bool
    ) -> None:
        """The key and connection first; then, if they work, the references of the account's rules."""
        account, client = clients.accounts[self.name], clients.client(self.name)
        if account.problem is not None or client is None:
            self.problem(account.problem or "not configured")
            return
        if account.mode == "dry-run":
            if rules:
                message = "no MATON_API_KEY or SYSTEME_API_KEY (a dry run): its rules' references were not checked"
                self.problem(message, "warning")
            return
        if (found := await _connection(maton, account)) is not None:
            self.problem(*found)
            if found[1] == "error":
                return
        self._api = client.session()
        if not await _key_works(self.api, self.problem, self.key(account)):
            return
        self.report.checked.append(self.name)
        try:
            for rule in rules:
                await self.rule(rule, create_fields=create_fields)
        except ApiError as exc:
            self.problem(f"a lookup failed, so its rules' references were not all checked: {exc.message}")

    async def index(self, path: str) -> Index:
        if path not in self._indexes:
            ids: set[int] = set()
            names: dict[str, None] = {}
            async for item in self.api.paginate(path):
                ids.add(int(item["id"]))
                names.setdefault(str(item.get("name", "")).strip())
            self._indexes[path] = ids, names
        return self._indexes[path]

    async def rule(self, rule: Rule, *, create_fields: bool) -> None:
        line, column = self.loaded.positions.get(rule.id, (1, 1))

        def report(message: str, severity: Severity = "error") -> None:
            self.report.problems.append(Problem(self.loaded.path, line, column, f"rule '{rule.id}'", message, severity))

        for action in rule.actions:
            if isinstance(action, EnrollAction | UnenrollAction) and _literal(action.course):
                if not _exists(action.course, await self.index("/api/school/courses")):
                    report(f"course {action.course!r} does not exist in {self.where}")
            elif isinstance(action, CommunityAction) and _literal(action.community):
                if not _exists(action.community, await self.index("/api/community/communities")):
                    report(f"community {action.community!r} does not exist in {self.where}")
            elif isinstance(action, TagAction) and _literal(action.name or ""):
                await self._tag(action, report)
        for slug in field_slugs(rule):
            if not setup.SLUG.match(slug):
                report(f"contact field {slug!r} cannot exist in Systeme.io: a slug is letters, digits and _ only")
            elif (why := await self._field(slug, create_fields)) is not None:
                report(why)

    async def _tag(self, action: TagAction, report: Callable[[str, Severity], None]) -> None:
        """A tag is created on first use; names that match it without case are an ambiguity worth a warning."""
        index = await self.index("/api/tags")
        if action.id is None and (twins := _twins(action.name or "", index)):
            use = (action.name or "").strip() if (action.name or "").strip() in twins else twins[0]
            names = " and ".join(map(repr, twins))
            message = f"tags {names} all exist{self._in()}: names match without case, so {use!r} is used"
            report(f"{message}; rename or delete the others", "warning")
        reference = action.id if action.id is not None else action.name or ""
        if action.kind == "tag" and not _exists(reference, index, fold=True):
            name = action.name or action.id
            report(f"tag {name!r} does not exist yet{self._in()}; it is created on first use", "notice")

    def _in(self) -> str:
        return "" if self.name == "default" else f" in {self.where}"

    async def _field(self, slug: str, create: bool) -> str | None:
        """Why the field is missing, or None when it exists (or was just created)."""
        if self._fields is None:
            self._fields = await setup.contact_fields(self.api)
        if slug in self._fields:
            return None
        if not create:
            return f"contact field {slug!r} does not exist in {self.where} (`check --live --create-fields` creates it)"
        if slug not in self._created:
            try:
                made = await setup.create_field(self.api, slug)
            except ApiError as exc:
                self._created[slug] = f"contact field {slug!r} could not be created in {self.where}: {exc.message}"
            else:
                self._created[slug] = None
                title = str(made.get("fieldName") or setup.field_name(slug))
                self.report.created.append(f"created contact field {slug} ({title!r}) in account '{self.name}'")
        return self._created[slug]


async def _connection(maton: MatonClient | None, account: Account) -> tuple[str, Severity] | None:
    """Why the account's Maton connection cannot carry its requests (asked of the connections API), or None.

    An error stops that account's checks; a warning (Maton could not answer) leaves the key check to tell.
    """
    if account.mode != "maton" or maton is None:
        return None
    if not account.connection:
        try:
            ambiguous = several_active(await list_connections(maton))
        except MatonError:
            return None  # the key check that follows says whether the key works
        return (ambiguous, "error") if ambiguous is not None else None
    try:
        why = connection_problem(account.connection, await find_connection(maton, account.connection))
    except MatonError as exc:
        if exc.status in (401, 403):
            return f"Maton refuses MATON_API_KEY: {exc.message}", "error"
        return f"Maton could not say whether connection {account.connection} is ACTIVE: {exc.message}", "warning"
    return (why, "error") if why is not None else None


async def live_check(
    loaded: LoadedRules, clients: AccountClients, *, maton: MatonClient | None = None, create_fields: bool = False
) -> LiveReport:
    """Check every account that can be read, and each rule's references against its own account."""
    report = LiveReport()
    uses = rules_by_account(loaded)
    for name in clients.accounts:
        check = _AccountCheck(loaded, report, name)
        await check.account(clients, uses.get(name, []), maton=maton, create_fields=create_fields)
    report.problems.sort(key=lambda p: (p.line, p.column))
    return report


async def _key_works(api: SystemeSession, problem: Callable[[str], None], key: str) -> bool:
    """One GET: does the account take our key (and connection)? A refusal names the key, then the API's words."""
    try:
        await api.request("GET", "/api/tags", params={"limit": 10})
    except (AccountUnusable, Forbidden) as exc:
        problem(f"the account refuses {key}: {exc.message}")
        return False
    except ApiError as exc:
        problem(f"the account could not be read: {exc.message}")
        return False
    return True
