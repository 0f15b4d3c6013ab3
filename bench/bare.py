"""The baseline for bench/ingest.py: a FastAPI endpoint that only parses the JSON body."""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/hooks/{source}", status_code=202)
async def bare(source: str, request: Request) -> dict[str, Any]:
    payload = json.loads(await request.body())
    return {"event_id": str(payload.get("id")), "duplicate": False}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning", access_log=False)
