"""Write the reference part of docs/api.md from protos/ (make api-docs), or check it is current.

The prose above the marker is written by hand; everything below it (services, methods, HTTP
routes, messages, enums, reasons) is generated from the .proto files with their comments and
from the services' reason tables, so the reference cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.gen_protos import GOOGLEAPIS, PROTOS, ROOT

DOC = ROOT / "docs" / "api.md"
MARKER = "<!-- Everything below is generated from protos/ by `make api-docs`; do not edit. -->"
_VERBS = ("get", "post", "put", "patch", "delete")
_TYPES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()
}
_MESSAGE, _ENUM = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, 14

Comments = dict[tuple[int, ...], str]


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{GOOGLEAPIS}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *files,
            ],
            check=True,
            cwd=PROTOS,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def comments(proto: descriptor_pb2.FileDescriptorProto) -> Comments:
    found: Comments = {}
    for location in proto.source_code_info.location:
        text = " ".join(line.strip() for line in location.leading_comments.splitlines())
        text = text or location.trailing_comments.strip()
        if text:
            found[tuple(location.path)] = text
    return found


def route(method: descriptor_pb2.MethodDescriptorProto) -> str:
    rule = http_pb2.HttpRule()
    options = method.options
    if not options.HasExtension(annotations_pb2.http):
        return ""
    rule.CopyFrom(options.Extensions[annotations_pb2.http])
    verb = next((v for v in _VERBS if getattr(rule, v)), "")
    return f"`{verb.upper()} {getattr(rule, verb)}`" if verb else ""


def short(type_name: str) -> str:
    return type_name.lstrip(".").removeprefix("loyalty.").replace("google.protobuf.", "")


def field_type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    kind = short(field.type_name) if field.type_name else _TYPES[field.type]
    repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    return f"repeated {kind}" if repeated else kind


def services(proto: descriptor_pb2.FileDescriptorProto, notes: Comments) -> list[str]:
    lines: list[str] = []
    for s_index, service in enumerate(proto.service):
        lines += [f"### `{proto.package}.{service.name}`", ""]
        if note := notes.get((6, s_index)):
            lines += [note, ""]
        lines += ["| method | request → response | HTTP | notes |", "|---|---|---|---|"]
        for m_index, method in enumerate(service.method):
            stream = "stream " if method.server_streaming else ""
            signature = f"`{short(method.input_type)}` → {stream}`{short(method.output_type)}`"
            note = notes.get((6, s_index, 2, m_index), "").replace("|", "\\|")
            lines.append(f"| `{method.name}` | {signature} | {route(method)} | {note} |")
        lines.append("")
    return lines


def messages(proto: descriptor_pb2.FileDescriptorProto, notes: Comments) -> list[str]:
    lines: list[str] = []
    for m_index, message in enumerate(proto.message_type):
        lines += [f"#### `{proto.package.removeprefix('loyalty.')}.{message.name}`", ""]
        if note := notes.get((4, m_index)):
            lines += [note, ""]
        if not message.field:
            lines += ["No fields.", ""]
            continue
        lines += ["| field | type | notes |", "|---|---|---|"]
        for f_index, field in enumerate(message.field):
            oneof = ""
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = f"one of `{message.oneof_decl[field.oneof_index].name}`. "
            note = oneof + notes.get((4, m_index, 2, f_index), "").replace("|", "\\|")
            lines.append(f"| `{field.name}` | `{field_type(field)}` | {note} |")
        lines.append("")
    return lines


def enums(proto: descriptor_pb2.FileDescriptorProto) -> list[str]:
    lines: list[str] = []
    for enum in proto.enum_type:
        values = ", ".join(f"`{v.name}`" for v in enum.value)
        lines += [f"- `{proto.package.removeprefix('loyalty.')}.{enum.name}`: {values}"]
    return [*lines, ""] if lines else []


def reasons() -> list[str]:
    import grpc

    from gateway.errors import HTTP_STATUS
    from loyalty_service.domain.reasons import DOMAIN, KIND, MESSAGES

    lines = [
        f"Every rejection carries a `google.rpc.ErrorInfo` with domain `{DOMAIN}` and one of:",
        "",
        "| reason | gRPC code | HTTP | message |",
        "|---|---|---|---|",
    ]
    for reason, kind in KIND.items():
        http = HTTP_STATUS[grpc.StatusCode[kind.name]]
        lines.append(f"| `{reason}` | `{kind.name}` | {http} | {MESSAGES.get(reason, '')} |")
    return [*lines, ""]


def render() -> str:
    own = [p for p in descriptor_set().file if p.package.startswith("loyalty.")]
    body = ["## Services", ""]
    for proto in own:
        body += services(proto, comments(proto))
    body += ["## Reasons", "", *reasons(), "## Messages", ""]
    for proto in own:
        body += [f"### `{proto.name}`", "", *enums(proto), *messages(proto, comments(proto))]
    hand_written = DOC.read_text().split(MARKER)[0].rstrip("\n")
    return "\n".join([hand_written, "", MARKER, "", *body]).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[:1] == ["--check"]:
        if DOC.read_text() != text:
            print("docs/api.md is stale; run `make api-docs`")
            return 1
        print("docs/api.md is current")
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
