"""The deployment (infra/, azure.yaml) against the code it deploys.

No Bicep compiler can be installed offline, so every template is parsed with tree-sitter-bicep
and its syntax tree is read: the settings the template sets against what grading/settings.py
reads (read at test time, so a new setting without a template parameter fails here), role
definition ids against Azure's built-in roles, the absence of keys and connection secrets, the
tables, queues and blob containers against the code's names, and the Flex Consumption shape of
the function app.

tree-sitter-bicep 1.1.0 predates Bicep's ``extension`` statement: the one such line, the Microsoft
Graph extension of modules/graph-permissions.bicep, is checked with a strict pattern and blanked
(same length, so positions hold) before the rest of that file is parsed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

from grading import scheduler
from grading import settings as grader_settings
from grading.remediation import tables as remediation_tables
from grading.storage import tables as storage_tables
from grading.storage import watermark

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"
GRANT_SCRIPT = INFRA / "grant-permissions.ps1"

# Azure built-in role ids, as Microsoft's "Azure built-in roles" page lists them.
BUILT_IN_ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataReader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "logAnalyticsReader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
FIRST_PARTY_APPS = {
    "microsoftGraph": "00000003-0000-0000-c000-000000000000",
    "office365ExchangeOnline": "00000002-0000-0ff1-ce00-000000000000",
}

# What the app's identity holds, on which kind of resource: exactly this, nothing broader.
APP_IDENTITY_ROLES = {
    ("storageBlobDataOwner", "Microsoft.Storage/storageAccounts"),
    ("storageQueueDataContributor", "Microsoft.Storage/storageAccounts"),
    ("storageTableDataContributor", "Microsoft.Storage/storageAccounts"),
    ("monitoringMetricsPublisher", "Microsoft.Insights/components"),
    ("logAnalyticsReader", "Microsoft.OperationalInsights/workspaces"),
    ("keyVaultSecretsUser", "Microsoft.KeyVault/vaults/secrets"),
}

# Settings the template sets that grading/settings.py does not read: the Functions host's own.
HOST_ONLY_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",     # where telemetry goes (no credential: local auth is off)
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # telemetry signed in as the managed identity
    "AZURE_CLIENT_ID",                           # which identity DefaultAzureCredential uses
}
# Settings the code reads that must NOT be set in Azure.
LOCAL_ONLY_SETTINGS = {
    "AzureWebJobsStorage": "a connection string; Azure uses the identity-based AzureWebJobsStorage__*",
    "GRADER_DATA_DIR": "the local source's export folder",
    "GRADER_CLOCK_SKEW": "bounds an export's rows against the clock; exports are read by the CLI, not in Azure",
}
# Template defaults that differ from the code's defaults on purpose.
DELIBERATE_DEFAULTS = {
    "GRADER_SOURCE": "the code defaults to the local source, which has no place in Azure",
}
# azd variables that azd itself always sets.
AZD_BUILT_INS = {"AZURE_ENV_NAME", "AZURE_LOCATION"}

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EXTENSION_LINE = re.compile(rb"(?m)^extension[ \t]+(\w+)[ \t]*$")
GRAPH_PERMISSION = re.compile(r"^[A-Za-z]+(?:-[A-Za-z]+)?\.[A-Za-z]+(?:\.[A-Za-z]+)*$")


# ---------------------------------------------------------------------------------------------
# Reading Bicep


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()  # a value only known at deployment time


@cache
def _parser(kind: str) -> Parser:
    module = tree_sitter_bicep if kind == "bicep" else tree_sitter_powershell
    return Parser(Language(module.language()))


def syntax_problems(root: Node) -> list[str]:
    """Every ERROR or MISSING node, as 'line:column text'."""
    found: list[str] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, col = node.start_point
            kind = "missing" if node.is_missing else "error"
            found.append(f"{line + 1}:{col + 1} {kind} {node.text.decode(errors='replace')[:60]!r}")
        stack.extend(node.children)
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class Template:
    path: Path
    source: bytes
    root: Node
    extensions: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.source.decode()


@cache
def template(path: Path) -> Template:
    source = path.read_bytes()
    extensions = tuple(m.group(1).decode() for m in EXTENSION_LINE.finditer(source))
    blanked = EXTENSION_LINE.sub(lambda m: b" " * len(m.group(0)), source)
    return Template(path, source, _parser("bicep").parse(blanked).root_node, extensions)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def text(node: Node) -> str:
    return node.text.decode()


def named(node: Node) -> list[Node]:
    return [c for c in node.children if c.is_named]


def declarations(tpl: Template, kind: str) -> dict[str, Node]:
    """Top-level declarations of *kind* (parameter_declaration, variable_declaration, ...) by name."""
    out = {}
    for node in tpl.root.children:
        if node.type == kind:
            ident = next(c for c in node.children if c.type == "identifier")
            out[text(ident)] = node
    return out


def declared_value(decl: Node) -> Node | None:
    """The expression after '=' in a param/var/output declaration (None: a param without default)."""
    children = decl.children
    for i, child in enumerate(children):
        if child.type == "=":
            return children[i + 1]
    return None


def decorators_of(decl: Node) -> list[str]:
    prev = decl.prev_named_sibling
    if prev is None or prev.type != "decorators":
        return []
    return [text(d) for d in prev.children if d.type == "decorator"]


def string_value(node: Node) -> str | None:
    """A string literal's value (None if it is not a plain literal)."""
    if node.type != "string":
        return None
    parts = []
    for child in node.children:
        if child.type == "interpolation":
            return None
        if child.type == "string_content":
            parts.append(text(child))
        elif child.type == "escape_sequence":
            esc = text(child)
            parts.append({"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\r": "\r", "\\$": "$"}.get(esc, esc))
    return "".join(parts)


def object_properties(node: Node) -> dict[str, Node]:
    """An object literal's properties: key -> value node (unwraps `if`/`for` bodies)."""
    node = body_object(node)
    out = {}
    for prop in node.children:
        if prop.type != "object_property":
            continue
        key_node, value = prop.named_children[0], prop.named_children[-1]
        key = string_value(key_node) if key_node.type == "string" else text(key_node)
        assert key is not None, f"computed key in {text(prop)[:60]}"
        out[key] = value
    return out


def body_object(node: Node) -> Node:
    """The object of a resource/module body, looking through `if (...) {...}` and `[for ...: {...}]`."""
    if node.type == "object":
        return node
    for child in named(node):
        if child.type in {"object", "if_statement", "for_statement"}:
            return body_object(child)
    raise AssertionError(f"no object in {text(node)[:80]}")


def prop_path(node: Node, *keys: str) -> Node:
    for key in keys:
        props = object_properties(node)
        assert key in props, f"no {key!r} in {text(node)[:80]}"
        node = props[key]
    return node


@dataclasses.dataclass(frozen=True)
class Resource:
    symbol: str
    type: str  # without the API version
    api_version: str
    body: Node
    declaration: Node


def resources(tpl: Template) -> list[Resource]:
    """Every resource declaration, nested ones included."""
    out = []
    stack = [tpl.root]
    while stack:
        node = stack.pop()
        if node.type == "resource_declaration":
            ident = next(c for c in node.children if c.type == "identifier")
            type_string = string_value(next(c for c in node.children if c.type == "string"))
            assert type_string is not None
            rtype, _, version = type_string.partition("@")
            body = node.children[-1]
            out.append(Resource(text(ident), rtype, version, body, node))
        stack.extend(node.children)
    return out


def modules(tpl: Template) -> dict[str, tuple[str, Node]]:
    out = {}
    for name, decl in declarations(tpl, "module_declaration").items():
        path = string_value(next(c for c in decl.children if c.type == "string"))
        assert path is not None
        out[name] = (path, decl.children[-1])
    return out


# ---------------------------------------------------------------------------------------------
# Evaluating the few expressions a setting's default is made of


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Node | None
    decorators: tuple[str, ...]


def params(tpl: Template) -> dict[str, Param]:
    out = {}
    for name, decl in declarations(tpl, "parameter_declaration").items():
        type_node = next(c for c in decl.children if c.type == "type")
        out[name] = Param(name, text(type_node), declared_value(decl), tuple(decorators_of(decl)))
    return out


def evaluate(node: Node, env: dict[str, Param]) -> Any:
    """The value of a literal-ish expression given parameter defaults; UNKNOWN past that.

    Handles literals, parameter references, string(x), empty(x), !x, (x) and c ? a : b: the
    shapes main.bicep uses to turn a parameter into an app setting."""
    kind = node.type
    if kind == "string":
        value = string_value(node)
        return UNKNOWN if value is None else value
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "parenthesized_expression":
        return evaluate(named(node)[0], env)
    if kind == "identifier":
        param = env.get(text(node))
        return UNKNOWN if param is None or param.default is None else evaluate(param.default, env)
    if kind == "unary_expression" and text(node).startswith("!"):
        inner = evaluate(named(node)[-1], env)
        return UNKNOWN if inner is UNKNOWN else not inner
    if kind == "ternary_expression":
        cond, yes, no = named(node)
        chosen = evaluate(cond, env)
        if chosen is UNKNOWN:
            return UNKNOWN
        return evaluate(yes if chosen else no, env)
    if kind == "call_expression":
        fn = text(named(node)[0])
        args = [a for a in named(node)[1].children if a.is_named]
        if fn == "string" and len(args) == 1:
            value = evaluate(args[0], env)
            if value is UNKNOWN:
                return UNKNOWN
            return ("True" if value else "False") if isinstance(value, bool) else str(value)
        if fn == "empty" and len(args) == 1:
            value = evaluate(args[0], env)
            return UNKNOWN if value is UNKNOWN else len(value) == 0
    return UNKNOWN


def setting_text(value: Any) -> str:
    """What an app setting holds for a Bicep value (app settings are strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def referenced_identifiers(node: Node) -> set[str]:
    found = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "identifier":
            found.add(text(n))
        stack.extend(n.children)
    return found


# ---------------------------------------------------------------------------------------------
# Facts the tests share


@cache
def app_settings() -> dict[str, Node]:
    """main.bicep's appSettings: the grader's settings, key -> value expression."""
    return object_properties(declared_value(declarations(template(MAIN), "variable_declaration")["appSettings"]))


@cache
def host_settings() -> dict[str, Node]:
    """modules/function-app.bicep's hostSettings: what the Functions host reads."""
    tpl = template(FUNCTION_APP)
    return object_properties(declared_value(declarations(tpl, "variable_declaration")["hostSettings"]))


def template_settings() -> set[str]:
    return set(app_settings()) | set(host_settings())


def main_params() -> dict[str, Param]:
    return params(template(MAIN))


def code_defaults() -> dict[str, Any]:
    """Every setting's default in the code (absent when the setting has none)."""
    out = {}
    for cls in grader_settings.ALL_SECTIONS:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.metadata["env"]] = f.default
    return out


def deployed_environment() -> dict[str, str]:
    """The app settings a deployment with every default gets, where known before deploying."""
    env = {}
    p = main_params()
    for key, node in app_settings().items():
        value = evaluate(node, p)
        if value is not UNKNOWN:
            env[key] = setting_text(value)
    for key, node in host_settings().items():
        value = evaluate(node, {})
        if value is not UNKNOWN:
            env[key] = setting_text(value)
    return env


def role_assignments() -> list[dict[str, str]]:
    """Every role assignment of every template: role key, principal, scope kind, name expression."""
    out = []
    for path in bicep_files():
        tpl = template(path)
        by_symbol = {r.symbol: r for r in resources(tpl)}
        for res in by_symbol.values():
            if res.type != "Microsoft.Authorization/roleAssignments":
                continue
            props = object_properties(res.body)
            inner = object_properties(props["properties"])
            role_text = text(inner["roleDefinitionId"])
            role = re.fullmatch(
                r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)", role_text
            )
            assert role, f"{path.name} {res.symbol}: roleDefinitionId is not a role of builtin-ids.json: {role_text}"
            scope = text(props["scope"])
            out.append({
                "file": path.name,
                "symbol": res.symbol,
                "role": role.group(1),
                "principal": text(inner["principalId"]),
                "principalType": text(inner["principalType"]),
                "scopeType": by_symbol[scope].type,
                "name": text(props["name"]),
                "conditional": str(any(c.type == "if_statement" for c in res.declaration.children)),
            })
    return out


# ---------------------------------------------------------------------------------------------
# Syntax


def test_checker_reports_syntax_errors():
    """The syntax check can fail: a template with a broken object and an unfinished call is caught."""
    broken = _parser("bicep").parse(b"param a string = 'x'\nresource r 'A/b@1' = {\n  name: concat('a'\n")
    assert syntax_problems(broken.root_node)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path):
    assert syntax_problems(template(path).root) == []


def test_only_the_graph_module_uses_an_extension_and_bicepconfig_names_it():
    used = {path.relative_to(INFRA).as_posix(): template(path).extensions for path in bicep_files()}
    assert {k: v for k, v in used.items() if v} == {"modules/graph-permissions.bicep": ("microsoftGraphV1",)}
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert re.fullmatch(r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+",
                        config["extensions"]["microsoftGraphV1"])


def test_grant_script_parses():
    tree = _parser("powershell").parse(GRANT_SCRIPT.read_bytes())
    assert syntax_problems(tree.root_node) == []
    broken = _parser("powershell").parse(b"if ($a { Write-Host }\n")
    assert syntax_problems(broken.root_node), "the PowerShell check must be able to fail"


def test_modules_exist_and_receive_only_parameters_they_declare():
    for path in bicep_files():
        for name, (relative, body) in modules(template(path)).items():
            target = (path.parent / relative).resolve()
            assert target.is_file(), f"{path.name}: module {name} points at missing {relative}"
            declared = set(params(template(target)))
            passed = set(object_properties(prop_path(body, "params")))
            assert passed <= declared, f"{path.name}: module {name} passes unknown {sorted(passed - declared)}"
            required = {n for n, p in params(template(target)).items() if p.default is None}
            assert required <= passed, f"{path.name}: module {name} misses required {sorted(required - passed)}"


# ---------------------------------------------------------------------------------------------
# Settings: every one the code reads, nothing else


def test_every_setting_the_code_reads_is_set_by_the_template():
    code = set(grader_settings.all_settings())
    assert set(LOCAL_ONLY_SETTINGS) <= code, "a local-only setting listed here is no longer read by the code"
    missing = code - set(LOCAL_ONLY_SETTINGS) - template_settings()
    assert not missing, f"settings the code reads but infra/ never sets: {sorted(missing)}"


def test_the_template_sets_nothing_unused_and_no_connection_string():
    code = set(grader_settings.all_settings())
    unused = template_settings() - code - HOST_ONLY_SETTINGS
    assert not unused, f"app settings nobody reads: {sorted(unused)}"
    assert not template_settings() & set(LOCAL_ONLY_SETTINGS)


def test_the_function_app_applies_both_sets_of_settings():
    tpl = template(FUNCTION_APP)
    config = [r for r in resources(tpl) if r.type == "Microsoft.Web/sites/config"]
    assert len(config) == 1
    assert text(prop_path(config[0].body, "name")) == "'appsettings'"
    assert text(prop_path(config[0].body, "properties")) == "union(hostSettings, appSettings)"
    passed = object_properties(prop_path(modules(template(MAIN))["functionApp"][1], "params"))
    assert text(passed["appSettings"]) == "appSettings"


def test_every_setting_comes_from_a_parameter_with_a_default():
    p = main_params()
    for key, node in app_settings().items():
        refs = referenced_identifiers(node) & set(p)
        assert refs, f"{key} is not set from a parameter"
        for name in refs:
            assert p[name].default is not None, f"{key}: parameter {name} has no default"


def test_template_defaults_are_the_codes_defaults_and_load_cleanly():
    env = deployed_environment()
    assert env["REMEDIATION_MODE"] == "report", "a fresh deployment must change nothing in the tenant"
    for cls in grader_settings.ALL_SECTIONS:
        section = grader_settings.load_section(cls, env)  # raises SettingsError on a bad default
        for f in dataclasses.fields(cls):
            key = f.metadata["env"]
            if key not in env or key not in app_settings() or key in DELIBERATE_DEFAULTS:
                continue  # a deployment fact (host settings), unknown before deploying, or deliberate
            assert getattr(section, f.name) == f.default, (
                f"{key}: the template's default {env[key]!r} differs from the code's {f.default!r}")


def test_default_check_catches_a_drifted_default():
    """The comparison above bites: a template default the code would read differently is seen."""
    env = dict(deployed_environment(), GRADER_INGESTION_DELAY="45m")
    section = grader_settings.load_section(grader_settings.WindowSettings, env)
    assert section.ingestion_delay != code_defaults()["GRADER_INGESTION_DELAY"]


def test_storage_service_uris_have_a_shape_the_code_accepts():
    """The host settings hold ARM's primaryEndpoints (with a trailing slash); the code parses them."""
    hosts = host_settings()
    for service in ("blob", "queue", "table"):
        key = f"AzureWebJobsStorage__{service}ServiceUri"
        assert text(hosts[key]) == f"storage.properties.primaryEndpoints.{service}"
        arm_value = f"https://stgraderabc123.{service}.core.windows.net/"
        env = {key: arm_value, "AzureWebJobsStorage__credential": "managedidentity"}
        section = grader_settings.load_section(grader_settings.StorageSettings, env)
        assert getattr(section, f"{service}_service_uri") == arm_value.rstrip("/")
    assert evaluate(hosts["AzureWebJobsStorage__credential"], {}) == "managedidentity"
    assert text(hosts["AzureWebJobsStorage__clientId"]) == "identityClientId"
    assert text(hosts["AZURE_CLIENT_ID"]) == "identityClientId"
    auth = string_value(hosts["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    assert auth is None and text(hosts["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) == (
        "'ClientId=${identityClientId};Authorization=AAD'")


FLEX_CONSUMPTION_DEFAULT_TIMEOUT = timedelta(minutes=30)
"""The Functions docs' timeout table: Flex Consumption defaults to 30 minutes, maximum unbounded
(with a 60-minute grace on scale-in)."""


def test_the_function_timeout_is_flex_consumptions_and_the_sweep_deadline_ends_well_before_it():
    """host.json no longer cuts a sweep at 10 minutes; the sweep's own deadline, plus the query in
    flight when it is reached, ends inside the host's timeout and inside the watermark's lease, so a
    slow sweep is recorded incomplete instead of the worker being restarted with nothing recorded."""
    host = json.loads((ROOT / "host.json").read_text())
    timeout = grader_settings.parse_timespan(host["functionTimeout"])
    assert timeout == FLEX_CONSUMPTION_DEFAULT_TIMEOUT
    env = deployed_environment()
    window = grader_settings.load_section(grader_settings.WindowSettings, env)
    telemetry = grader_settings.load_section(grader_settings.TelemetrySettings, {**env, "GRADER_SOURCE": "defender"})
    in_flight = timedelta(seconds=telemetry.query_retry_budget_seconds)
    assert window.sweep_deadline + in_flight < timeout, "a sweep at its deadline must still finish in time"
    assert in_flight <= scheduler.LEASE_BEYOND_DEADLINE
    assert watermark.DEFAULT_LEASE >= timeout >= window.sweep_deadline + scheduler.LEASE_BEYOND_DEADLINE


def test_azd_parameters_keep_the_template_defaults():
    """main.parameters.json maps each parameter to an azd variable named like the app setting it
    feeds, with the template's own default, so an unset variable never blanks a safe default."""
    document = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    p = main_params()
    assert set(document) == set(p), f"parameters without an azd mapping: {sorted(set(p) ^ set(document))}"
    feeds = {}  # parameter -> the app setting it sets directly (as is, or through string())
    for key, node in app_settings().items():
        refs = referenced_identifiers(node) - {"string"}
        if len(refs) == 1 and refs <= set(p):
            feeds[refs.pop()] = key
    for name, entry in document.items():
        m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?\}", entry["value"])
        assert m, f"{name}: {entry['value']!r} is not an azd ${{VAR}} or ${{VAR=default}}"
        variable, default = m.group(1), m.group(2)
        if variable in AZD_BUILT_INS:
            assert p[name].default is None
            continue
        assert default is not None, f"{name}: ${{{variable}}} without a default blanks the template's"
        assert default == setting_text(evaluate(p[name].default, p)), f"{name}: azd default {default!r} drifted"
        if name in feeds:
            assert variable == feeds[name], f"{name} feeds {feeds[name]} but is read from ${{{variable}}}"


# ---------------------------------------------------------------------------------------------
# Roles and permissions


def test_builtin_ids_are_azures_built_in_role_and_app_ids():
    ids = json.loads((INFRA / "builtin-ids.json").read_text())
    assert ids["azureRoles"] == BUILT_IN_ROLES
    assert ids["firstPartyApps"] == FIRST_PARTY_APPS


def test_no_guid_is_written_into_a_template():
    """Role and app ids come from builtin-ids.json only, so one reviewed file holds them all."""
    for path in bicep_files():
        assert not GUID.findall(template(path).text), f"{path.name} holds a GUID literal"


def test_the_app_identity_holds_exactly_the_roles_it_needs():
    assignments = role_assignments()
    app = {(a["role"], a["scopeType"]) for a in assignments if a["principal"] == "appPrincipalId"}
    assert app == APP_IDENTITY_ROLES
    for a in assignments:
        assert a["role"] in BUILT_IN_ROLES
        # Deterministic, per scope, principal and role: a re-deployment updates, never duplicates.
        assert re.fullmatch(rf"guid\(\w+\.id, {a['principal']}, roles\.{a['role']}\)", a["name"]), a
        if a["principal"] == "appPrincipalId":
            assert a["principalType"] == "'ServicePrincipal'"
        else:
            assert a["principal"] == "operatorPrincipalId" and a["conditional"] == "True", a
            assert a["scopeType"] == "Microsoft.Storage/storageAccounts"


def test_every_module_that_grants_gets_the_app_identity():
    mods = modules(template(MAIN))
    for name in ("storage", "monitoring", "sentinelAccess", "graphPermissions", "keyVault"):
        passed = object_properties(prop_path(mods[name][1], "params"))
        assert text(passed["appPrincipalId"]) == "identity.outputs.principalId", name


def test_log_analytics_reader_is_scoped_to_the_sentinel_workspace_wherever_it_is():
    path, body = modules(template(MAIN))["sentinelAccess"]
    assert path == "modules/sentinel-access.bicep"
    assert text(prop_path(body, "scope")) == "resourceGroup(sentinelIdParts[2], sentinelIdParts[4])"
    assert text(prop_path(body, "params", "workspaceName")) == "last(sentinelIdParts)"
    workspace = [r for r in resources(template(INFRA / path)) if r.type.endswith("/workspaces")]
    assert len(workspace) == 1 and "existing" in text(workspace[0].declaration)
    assert text(app_settings()["LOG_ANALYTICS_WORKSPACE_ID"]).endswith("(sentinelAccess!.outputs.customerId)")


def graph_permissions_in_template() -> set[str]:
    node = declared_value(declarations(template(MAIN), "variable_declaration")["graphAppRoles"])
    found = set()
    stack = [node]
    while stack:
        n = stack.pop()
        value = string_value(n)
        if value and GRAPH_PERMISSION.fullmatch(value):
            found.add(value)
        stack.extend(n.children)
    return found


def graph_permissions_in_script() -> set[str]:
    block = re.search(r"\$KnownGraphPermissions = \[ordered\]@\{(.*?)\n\}", GRANT_SCRIPT.read_text(), re.S)
    assert block
    return set(re.findall(r"^\s*'([^']+)'\s*=", block.group(1), re.M))


def graph_permissions_in_guide() -> set[str]:
    rows = re.findall(r"^\| `([^`]+)` \| Microsoft Graph \|", OPERATIONS_GUIDE.read_text(), re.M)
    return set(rows)


def test_graph_permissions_agree_across_template_script_and_guide():
    template_set = graph_permissions_in_template()
    assert "ThreatHunting.Read.All" in template_set
    assert template_set == graph_permissions_in_script() == graph_permissions_in_guide()


def test_graph_module_grants_by_name_on_the_first_party_service_principals():
    tpl = template(INFRA / "modules" / "graph-permissions.bicep")
    kinds = {r.type for r in resources(tpl)}
    assert kinds == {"Microsoft.Graph/servicePrincipals", "Microsoft.Graph/appRoleAssignedTo"}
    assert "toObject(graphSp.appRoles, r => r.value, r => r.id)" in tpl.text
    assert "graphRoleIds[roleValue]" in tpl.text and "exchangeRoleIds['Exchange.ManageAsApp']" in tpl.text
    assert "firstPartyApps.microsoftGraph" in tpl.text and "firstPartyApps.office365ExchangeOnline" in tpl.text


def test_the_exchange_role_is_limited_to_connector_cmdlets():
    script = GRANT_SCRIPT.read_text()
    cmdlets = set(re.findall(r"'((?:Get|Set|Remove)-(?:Inbound|Outbound)Connector)'", script))
    wanted = {f"{verb}-{kind}Connector" for verb in ("Get", "Set", "Remove") for kind in ("Inbound", "Outbound")}
    assert cmdlets == wanted
    # Transport rules: read them, disable and re-enable a linked one; never create, change or remove one.
    rule_cmdlets = set(re.findall(r"'([A-Za-z]+-TransportRule)'", script))
    assert rule_cmdlets == {"Get-TransportRule", "Disable-TransportRule", "Enable-TransportRule"}
    assert "New-ManagementRole -Name $Name -Parent $Parent" in script
    assert "Remove-ManagementRoleEntry" in script
    assert "Exchange Administrator" not in re.sub(r"(?m)^\s*#.*$|<#.*?#>", "", script, flags=re.S)


# ---------------------------------------------------------------------------------------------
# No keys, no connection secrets


FORBIDDEN = [
    re.compile(r"listKeys?\s*\(", re.I),
    re.compile(r"listConnectionStrings\s*\(", re.I),
    re.compile(r"AccountKey\s*=", re.I),
    re.compile(r"SharedAccessKey", re.I),
    re.compile(r"DefaultEndpointsProtocol", re.I),
    re.compile(r"primaryKey|secondaryKey|\.keys\[", re.I),
    re.compile(r"InstrumentationKey\s*=", re.I),
]


def secret_findings(content: str) -> list[str]:
    return [p.pattern for p in FORBIDDEN if p.search(content)]


def test_secret_scan_catches_a_key():
    assert secret_findings("value: 'DefaultEndpointsProtocol=https;AccountKey=${st.listKeys().keys[0].value}'")


def test_no_key_or_connection_secret_anywhere_in_the_deployment():
    files = [*INFRA.rglob("*"), ROOT / "azure.yaml"]
    for path in files:
        if path.is_file():
            assert secret_findings(path.read_text()) == [], path


def test_local_authentication_is_off_everywhere():
    by_type: dict[str, list[Resource]] = {}
    for path in bicep_files():
        for res in resources(template(path)):
            by_type.setdefault(res.type, []).append(res)

    (storage,) = [r for r in by_type["Microsoft.Storage/storageAccounts"] if "existing" not in text(r.declaration)]
    props = object_properties(prop_path(storage.body, "properties"))
    assert text(props["allowSharedKeyAccess"]) == "false"
    assert text(props["allowBlobPublicAccess"]) == "false"
    assert text(props["defaultToOAuthAuthentication"]) == "true"
    assert text(props["minimumTlsVersion"]) == "'TLS1_2'"

    (insights,) = [r for r in by_type["Microsoft.Insights/components"] if "existing" not in text(r.declaration)]
    assert text(prop_path(insights.body, "properties", "DisableLocalAuth")) == "true"
    (workspace,) = [r for r in by_type["Microsoft.OperationalInsights/workspaces"]
                    if "existing" not in text(r.declaration)]
    assert text(prop_path(workspace.body, "properties", "features", "disableLocalAuth")) == "true"

    publishing = by_type["Microsoft.Web/sites/basicPublishingCredentialsPolicies"]
    assert {text(prop_path(r.body, "name")) for r in publishing} == {"'ftp'", "'scm'"}
    assert all(text(prop_path(r.body, "properties", "allow")) == "false" for r in publishing)


def test_secure_parameters_have_no_default_value_and_are_never_output():
    for path in bicep_files():
        tpl = template(path)
        outputs = " ".join(text(n) for n in declarations(tpl, "output_declaration").values())
        for param in params(tpl).values():
            if "@secure()" not in param.decorators:
                continue
            assert param.default is None or string_value(param.default) == "", f"{path.name}: {param.name}"
            assert not re.search(rf"\b{param.name}\b", outputs), f"{path.name} outputs {param.name}"


# ---------------------------------------------------------------------------------------------
# Tables, queues and blob containers


def main_list(name: str) -> list[Node]:
    node = declared_value(declarations(template(MAIN), "variable_declaration")[name])
    assert node.type == "array"
    return named(node)


def test_tables_are_the_codes_tables():
    roles = [string_value(n) for n in main_list("tableRoles")]
    assert sorted(roles) == sorted([*storage_tables.ROLES, *remediation_tables.ROLES])
    names = declared_value(declarations(template(MAIN), "variable_declaration")["tableNames"])
    assert text(names) == "map(tableRoles, role => '${graderTablePrefix}${role}')"
    prefix = evaluate(main_params()["graderTablePrefix"].default, {})
    assert prefix == code_defaults()["GRADER_TABLE_PREFIX"]
    for role in roles:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", f"{prefix}{role}"), "not a valid Azure table name"


def test_queues_are_the_codes_queues_with_their_poison_queues():
    code_queues = {v for k, v in code_defaults().items() if k.endswith("_QUEUE")}
    assert code_queues, "no *_QUEUE setting in grading/settings.py"
    p = main_params()
    deployed = set()
    for node in main_list("queueNames"):
        value = evaluate(node, p) if node.type == "identifier" else None
        if value is None:
            base = re.fullmatch(r"'\$\{(\w+)\}-poison'", text(node))
            assert base, text(node)
            value = evaluate(p[base.group(1)].default, p) + "-poison"
        deployed.add(value)
    assert deployed == code_queues | {q + "-poison" for q in code_queues}
    for name in deployed:
        assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name), name


def test_blob_containers_are_the_codes_containers():
    """Every *_CONTAINER setting's container is created, from the parameter that sets the setting."""
    code_containers = {k: v for k, v in code_defaults().items() if k.endswith("_CONTAINER")}
    assert code_containers, "no *_CONTAINER setting in grading/settings.py"
    p = main_params()
    passed = object_properties(prop_path(modules(template(MAIN))["storage"][1], "params"))
    assert passed["blobContainerNames"].type == "array"
    created = [text(n) for n in named(passed["blobContainerNames"])]
    assert all(name in p for name in created), f"containers not from a parameter: {created}"
    assert sorted(created) == sorted(text(app_settings()[key]) for key in code_containers)
    deployed = {evaluate(p[name].default, p) for name in created}
    assert deployed == set(code_containers.values())
    for name in deployed:
        assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name), name


def test_the_storage_module_creates_what_it_is_given():
    tpl = template(INFRA / "modules" / "storage.bicep")
    loops = {r.type: text(r.body) for r in resources(tpl) if r.body.type == "for_statement"}
    tables = "Microsoft.Storage/storageAccounts/tableServices/tables"
    queues = "Microsoft.Storage/storageAccounts/queueServices/queues"
    containers = "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert re.match(r"\[\s*for tableName in tableNames:", loops[tables])
    assert re.match(r"\[\s*for queueName in queueNames:", loops[queues])
    assert re.match(r"\[\s*for containerName in union\(\[deploymentContainerName\], blobContainerNames\):",
                    loops[containers])
    assert "publicAccess: 'None'" in loops[containers]
    passed = object_properties(prop_path(modules(template(MAIN))["storage"][1], "params"))
    assert text(passed["tableNames"]) == "tableNames" and text(passed["queueNames"]) == "queueNames"


# ---------------------------------------------------------------------------------------------
# Flex Consumption, azd


def test_function_app_is_python_311_on_flex_consumption_with_its_identity():
    by_type = {r.type: r for r in resources(template(FUNCTION_APP)) if "existing" not in text(r.declaration)}
    plan = by_type["Microsoft.Web/serverfarms"]
    assert text(prop_path(plan.body, "sku", "tier")) == "'FlexConsumption'"
    assert text(prop_path(plan.body, "sku", "name")) == "'FC1'"
    assert text(prop_path(plan.body, "properties", "reserved")) == "true"
    site = by_type["Microsoft.Web/sites"]
    assert text(prop_path(site.body, "kind")) == "'functionapp,linux'"
    assert text(prop_path(site.body, "identity", "type")) == "'UserAssigned'"
    config = prop_path(site.body, "properties", "functionAppConfig")
    assert text(prop_path(config, "runtime", "name")) == "'python'"
    assert text(prop_path(config, "runtime", "version")) == "'3.11'"
    auth = prop_path(config, "deployment", "storage", "authentication")
    assert text(prop_path(auth, "type")) == "'UserAssignedIdentity'"
    assert text(prop_path(auth, "userAssignedIdentityResourceId")) == "identityId"
    assert set(object_properties(prop_path(config, "scaleAndConcurrency"))) == {"instanceMemoryMB",
                                                                               "maximumInstanceCount"}
    assert text(prop_path(site.body, "properties", "httpsOnly")) == "true"


def simple_yaml(path: Path) -> dict[str, Any]:
    """The nested mapping of a plain YAML file (keys and scalars only, which azure.yaml is)."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        key, _, value = raw.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        if value.strip():
            stack[-1][1][key] = value.strip()
        else:
            child: dict[str, Any] = {}
            stack[-1][1][key] = child
            stack.append((indent, child))
    return root


def test_azd_deploys_this_folder_to_the_tagged_function_app():
    config = simple_yaml(ROOT / "azure.yaml")
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    (service_name, service), = config["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    app_params = params(template(FUNCTION_APP))
    assert evaluate(app_params["azdServiceName"].default, {}) == service_name
    assert "azdServiceName" not in object_properties(prop_path(modules(template(MAIN))["functionApp"][1], "params"))
    for needed in ("function_app.py", "host.json", "requirements.txt"):
        assert (ROOT / needed).is_file(), f"azd deploys the project root, which lacks {needed}"


def deployment_excludes() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_package_leaves_out_dev_files_and_keeps_the_app():
    ignored = deployment_excludes()
    for dev in (".venv", "node_modules", "tests", "infra", "local.settings.json"):
        assert dev in ignored
    for needed in ("grading", "function_app.py", "host.json", "requirements.txt"):
        assert needed not in ignored


# ---------------------------------------------------------------------------------------------
# The alert and the guide


def test_the_alert_keys_on_the_sweep_log_lines_and_failed_invocations():
    tpl = template(INFRA / "modules" / "monitoring.bicep")
    query = string_value(declared_value(declarations(tpl, "variable_declaration")["sweepProblemQuery"]))
    assert query is not None
    assert 'Message startswith "sweep failed"' in query and 'Message startswith "sweep incomplete"' in query
    assert "SeverityLevel >= 3" in query and "AppRequests" in query and "Success == false" in query
    (rule,) = [r for r in resources(tpl) if r.type == "Microsoft.Insights/scheduledQueryRules"]
    criterion = named(prop_path(rule.body, "properties", "criteria", "allOf"))[0]
    assert text(prop_path(criterion, "query")) == "sweepProblemQuery"
    assert text(prop_path(criterion, "operator")) == "'GreaterThan'"
    assert text(prop_path(criterion, "threshold")) == "0"


def code_log_calls() -> Iterator[tuple[str, str]]:
    """(logger name, message) of every error-level log call in grading/ on a named logger."""
    for path in (ROOT / "grading").rglob("*.py"):
        source = path.read_text()
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        loggers = {var: module if name == "__name__" else name.strip("\"'") for var, name in
                   re.findall(r"^(\w+)\s*=\s*logging\.getLogger\((__name__|\"[\w.]+\")\)", source, re.M)}
        for var, message in re.findall(r"\b(\w+)\.(?:error|critical|exception)\(\s*f?\"([^\"]*)\"", source):
            if var in loggers:
                yield loggers[var], message


def test_the_code_writes_the_log_lines_the_alert_keys_on():
    lines = list(code_log_calls())
    for prefix in ("sweep failed", "sweep incomplete"):
        assert any(logger == "grading.sweep" and message.startswith(prefix) for logger, message in lines), (
            f'no ERROR log starting "{prefix}" on logger "grading.sweep" in grading/: the alert rule in '
            "infra/modules/monitoring.bicep would never fire for it")


def test_the_guide_walks_through_every_operation_the_issue_names():
    guide = OPERATIONS_GUIDE.read_text()
    headings = [h.lower() for h in re.findall(r"^#{2,3} (.+)$", guide, re.M)]
    for topic in ("deploy", "report mode", "reading the verdicts", "enforce", "protecting connectors",
                  "approving held actions", "rolling back", "tuning the policy", "suppressing a false positive",
                  "cost of a sweep", "alerts", "permissions"):
        assert any(topic in h for h in headings), f"docs/operations.md has no section on {topic}"


def test_the_guides_deploy_steps_match_the_template():
    """Every azd variable the guide tells the reader to set is one main.parameters.json reads."""
    guide = OPERATIONS_GUIDE.read_text()
    variables = set(re.findall(r"azd env set ([A-Z][A-Z0-9]*_[A-Z0-9_]+)", guide))
    document = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    known = {re.match(r"\$\{(\w+)", e["value"]).group(1) for e in document.values()}
    assert variables, "the guide sets no azd variable"
    assert variables <= known, f"the guide sets variables the template never reads: {sorted(variables - known)}"
    for output in re.findall(r"azd env get-value ([A-Za-z_][A-Za-z0-9_]*)", guide):
        assert output in declarations(template(MAIN), "output_declaration"), f"no output {output}"
    assert "./infra/grant-permissions.ps1" in guide


# ---------------------------------------------------------------------------------------------
# What a real deployment would trip over


FLEX_MAXIMUM_INSTANCE_BOUNDS = (1, 1000)
"""Azure Functions "Event-driven scaling", Limit scale-out (Flex Consumption): the lowest maximum
instance count is 1, the highest 1000 (earlier revisions of that page said 40 as the lowest)."""


def decorator_values(param: Param, name: str) -> list[str]:
    return [re.fullmatch(rf"@{name}\((.*)\)", d).group(1) for d in param.decorators if d.startswith(f"@{name}(")]


def test_maximum_instance_count_keeps_to_the_documented_flex_bounds():
    low, high = FLEX_MAXIMUM_INSTANCE_BOUNDS
    for tpl in (template(MAIN), template(FUNCTION_APP)):
        param = params(tpl)["maximumInstanceCount"]
        assert decorator_values(param, "minValue") == [str(low)], tpl.path.name
        assert decorator_values(param, "maxValue") == [str(high)], tpl.path.name
        assert low <= evaluate(param.default, {}) <= high
    passed = object_properties(prop_path(modules(template(MAIN))["functionApp"][1], "params"))
    assert text(passed["maximumInstanceCount"]) == "maximumInstanceCount"


def test_the_webhook_url_reaches_the_app_only_as_a_key_vault_reference():
    """The URL is a credential: a @secure() parameter end to end (never in the deployment history),
    kept in Key Vault, and the app setting is a Key Vault reference resolved with the identity."""
    main = main_params()
    assert "@secure()" in main["notificationWebhookUrl"].decorators
    setting = text(app_settings()["REMEDIATION_WEBHOOK_URL"])
    assert setting == ("webhookInVault ? '@Microsoft.KeyVault(SecretUri=${keyVault!.outputs.webhookSecretUri})' "
                       ": (webhookIsReference ? notificationWebhookUrl : '')")
    variables = declarations(template(MAIN), "variable_declaration")
    assert text(declared_value(variables["webhookIsReference"])) == (
        "startsWith(notificationWebhookUrl, '@Microsoft.KeyVault(')")
    assert text(declared_value(variables["webhookInVault"])) == "!empty(notificationWebhookUrl) && !webhookIsReference"
    # Every module the URL itself is passed to takes it as @secure().
    for name, (relative, body) in modules(template(MAIN)).items():
        for key, value in object_properties(prop_path(body, "params")).items():
            if text(value) == "notificationWebhookUrl":
                target = params(template((INFRA / relative).resolve()))[key]
                assert "@secure()" in target.decorators, f"module {name} takes the webhook URL as plain {key}"
    path, body = modules(template(MAIN))["keyVault"]
    assert text(body).startswith("if (webhookInVault)")
    vault_tpl = template(INFRA / path)
    by_type = {r.type: r for r in resources(vault_tpl)}
    assert text(prop_path(by_type["Microsoft.KeyVault/vaults"].body, "properties", "enableRbacAuthorization")) == "true"
    secret = by_type["Microsoft.KeyVault/vaults/secrets"]
    assert text(prop_path(secret.body, "properties", "value")) == "notificationWebhookUrl"
    outputs = declarations(vault_tpl, "output_declaration")
    assert text(declared_value(outputs["webhookSecretUri"])) == "webhookSecret.properties.secretUri"
    site = next(r for r in resources(template(FUNCTION_APP)) if r.type == "Microsoft.Web/sites")
    assert text(prop_path(site.body, "properties", "keyVaultReferenceIdentity")) == "identityId"


def test_graph_permissions_are_left_to_the_script_by_default_and_the_guide_says_how():
    """An Owner without Privileged Role Administrator must be able to run azd up as it is."""
    assert evaluate(main_params()["grantGraphPermissions"].default, {}) is False
    document = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert document["grantGraphPermissions"]["value"] == "${GRANT_GRAPH_PERMISSIONS=false}"
    guide = OPERATIONS_GUIDE.read_text()
    assert "azd env set GRANT_GRAPH_PERMISSIONS true" in guide
    assert "pwsh ./infra/grant-permissions.ps1" in guide
    assert re.search(r"replicat\w+.{0,200}azd provision", guide, re.S), "the guide must give the re-run"


def test_enforce_mode_without_an_exchange_organisation_fails_the_deployment():
    """Enforce without EXCHANGE_ORGANIZATION_DOMAIN would deploy and then poison every message:
    the template refuses it with Bicep's fail(), as the code itself does at start-up."""
    node = app_settings()["EXCHANGE_ORGANIZATION_DOMAIN"]
    assert node.type == "ternary_expression"
    condition, refused, accepted = named(node)
    assert text(condition) == "enforce && !exchangeConfigured"
    assert text(refused).startswith("fail('EXCHANGE_ORGANIZATION_DOMAIN is required when REMEDIATION_MODE=enforce")
    assert text(accepted) == "exchangeOrganizationDomain"
    variables = declarations(template(MAIN), "variable_declaration")
    assert text(declared_value(variables["enforce"])) == "remediationMode == 'enforce'"
    assert text(declared_value(variables["exchangeConfigured"])) == "!empty(exchangeOrganizationDomain)"
    with pytest.raises(grader_settings.SettingsError, match="EXCHANGE_ORGANIZATION_DOMAIN"):
        grader_settings.load_section(grader_settings.RemediationSettings,
                                     {"REMEDIATION_MODE": "enforce", "EXCHANGE_TENANT_ID": "contoso.onmicrosoft.com"})


def test_exchange_manage_as_app_is_granted_only_with_an_exchange_organisation():
    graph_module = params(template(INFRA / "modules" / "graph-permissions.bicep"))
    assert graph_module["grantExchangeManageAsApp"].default is None, "main.bicep must decide, not a default"
    passed = object_properties(prop_path(modules(template(MAIN))["graphPermissions"][1], "params"))
    assert text(passed["grantExchangeManageAsApp"]) == "exchangeConfigured"
    (grant,) = [r for r in resources(template(INFRA / "modules" / "graph-permissions.bicep"))
                if r.symbol == "exchangeManageAsApp"]
    assert text(grant.body).startswith("if (grantExchangeManageAsApp)")


def test_the_grant_script_names_its_exchange_objects_per_environment_and_skips_exchange_without_one():
    script = GRANT_SCRIPT.read_text()
    param_block = re.search(r"\[CmdletBinding[^\n]*\]\s*param\((.*?)\n\)", script, re.S).group(1)
    assert re.search(r"\[string\]\$ServicePrincipalName\s*(,|$)", param_block, re.M), "no -ServicePrincipalName"
    assert re.search(r"\[string\]\$RoleGroupName\s*(,|$)", param_block, re.M), "RoleGroupName has a fixed default"
    assert "-DisplayName $ServicePrincipalName" in script
    assert not re.search(r"-DisplayName\s+'", script), "a fixed service principal name collides across environments"
    assert "Get-AzdValue 'AZURE_ENV_NAME'" in script
    assert '"connector-grader-$environment"' in script and '"Connector Grader $environment"' in script
    # No Exchange organisation: ExchangeAccess None, so neither Exchange.ManageAsApp nor the role group.
    assert re.search(r"\$organization = Get-AzdValue 'EXCHANGE_ORGANIZATION_DOMAIN'\s+.*?"
                     r"if \(-not \$organization\) \{ 'None' \}", script, re.S)
    assert "if ($ExchangeAccess -ne 'None') { Set-AppRoleAssignment $exchangeSp 'Exchange.ManageAsApp' }" in script
    assert "if ($ExchangeAccess -ne 'None' -or $Prune) { Grant-ExchangeRole }" in script


def graph_permission_conditions() -> dict[str, str]:
    """main.bicep's graphAppRoles: each permission -> the condition that grants it."""
    node = declared_value(declarations(template(MAIN), "variable_declaration")["graphAppRoles"])
    assert text(node).startswith("concat(")
    out = {}
    for arg in named(named(node)[1]):
        condition, granted, _otherwise = named(arg)
        for item in named(granted):
            out[string_value(item)] = text(condition)
    return out


def test_revoking_sessions_is_granted_what_it_uses_and_needs_no_user_read():
    """Revoking calls POST /users/{id}/revokeSignInSessions (User.RevokeSessions.All). Its read-back
    of signInSessionsValidFromDateTime needs User.Read.All, granted only with the tier-0 options:
    without it the runner treats the 403 as "cannot tell" and re-issues the idempotent revoke
    (tests/test_remediation_runner.py), so revoke alone must not need more."""
    conditions = graph_permission_conditions()
    assert conditions["User.RevokeSessions.All"] == "enforce && revokeSessions"
    assert "revokeSessions" not in conditions["User.Read.All"]
    guide = OPERATIONS_GUIDE.read_text()
    row = re.search(r"^\| `User\.Read\.All` \| Microsoft Graph \|.*$", guide, re.M).group(0)
    assert "read-back" in row


# ---------------------------------------------------------------------------------------------
# The local Functions host


FUNCTIONS_HOST_LOCAL_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME"}
"""What only Core Tools reads from local.settings.json (Flex Consumption takes the runtime from
functionAppConfig instead)."""


def test_the_local_settings_template_holds_known_settings_no_secret_and_every_binding_expression():
    document = json.loads((ROOT / "local.settings.example.json").read_text())
    assert document["IsEncrypted"] is False
    values = document["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"  # Azurite, no key
    unknown = set(values) - set(grader_settings.all_settings()) - FUNCTIONS_HOST_LOCAL_SETTINGS
    assert not unknown, f"local.settings.example.json sets settings nobody reads: {sorted(unknown)}"
    assert "REMEDIATION_WEBHOOK_URL" not in values and secret_findings(json.dumps(values)) == []
    assert values["REMEDIATION_MODE"] == "report"
    # Every %NAME% binding expression of function_app.py resolves, or the host will not index it.
    expressions = set(re.findall(r'"%([A-Z_]+)%"', (ROOT / "function_app.py").read_text()))
    assert expressions and expressions <= set(values)
    for cls in grader_settings.ALL_SECTIONS:
        grader_settings.load_section(cls, values)  # loads cleanly: no bad value in the template
    assert "local.settings.json" in (ROOT / ".gitignore").read_text().split()
    assert {"local.settings.json", "local.settings.example.json", ".azurite"} <= set(deployment_excludes())


def test_the_readme_says_how_to_run_under_the_functions_host_with_azurite():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Running under the Functions host locally\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README.md has no section 'Running under the Functions host locally'"
    body = section.group(1)
    for needed in ("cp local.settings.example.json local.settings.json", "azurite", "func start",
                   "/admin/functions/sweep_timer"):
        assert needed in body, needed
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert f"simulate {values['GRADER_DATA_DIR']}" in body, "the section must create the export the template reads"


def test_the_guide_gives_the_azd_version_that_honours_funcignore():
    guide = OPERATIONS_GUIDE.read_text()
    assert re.search(r"`azd`\) \*\*1\.18\.0 or later\*\*.{0,80}`\.funcignore`", guide, re.S)
    assert "1.18.0 or later" in (ROOT / "README.md").read_text()
