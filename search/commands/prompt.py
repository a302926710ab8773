"""``prompt``: the exact prompt an exported trial gives its model, for any serving stack."""

from __future__ import annotations

import json
import sys

from search.export import bundle_prompt, completion_request, load_manifest


def add_parsers(sub) -> None:
    """Register ``prompt`` on the CLI's subparsers."""
    p = sub.add_parser("prompt", help="print the prompt an exported trial builds for a query (retrieval, template, "
                                      "chat format), to send to vLLM's /v1/completions")
    p.add_argument("bundle", help="the directory `pers-search export --out` wrote")
    p.add_argument("--user", required=True, help="the user the query is for (a user id of the bundle)")
    p.add_argument("--query", required=True, help="the query text; '-' reads it from stdin")
    p.add_argument("--json", action="store_true",
                   help="print an OpenAI-compatible /v1/completions request body instead (the user's LoRA as model)")
    p.set_defaults(handler=cmd_prompt)


def cmd_prompt(args) -> int:
    query = sys.stdin.read() if args.query == "-" else args.query
    manifest = load_manifest(args.bundle)
    prompt = bundle_prompt(args.bundle, args.user, query)
    if args.json:
        adapter = (manifest.get("adapters") or {}).get(args.user)
        model = adapter.get("lora_name", args.user) if adapter else manifest["base_model"]["name"]
        print(json.dumps(completion_request(model, prompt, manifest["prompt"]["max_new_tokens"]), indent=1,
                         ensure_ascii=False))
    else:
        sys.stdout.write(prompt)
    return 0
