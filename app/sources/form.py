"""HTML forms (and Jotform): a secret token, fields as the event, no id unless the form names one."""

from __future__ import annotations

from app.errors import UnsupportedMediaType
from app.rules.schema import SourceConfig
from app.sources.base import Delivery, IncomingEvent, check_token, parse_json_object

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def parse(config: SourceConfig, delivery: Delivery, now: float, *, verify: bool = True) -> IncomingEvent:
    if verify:
        check_token(config.token, delivery)
    if delivery.media_type in FORM_TYPES and delivery.form is not None:
        payload = dict(delivery.form)
    elif delivery.media_type == "application/json":
        payload = parse_json_object(delivery.body)
    else:
        raise UnsupportedMediaType(
            "a form source takes application/x-www-form-urlencoded, multipart/form-data or application/json"
        )
    provider_id = None
    if config.id_field and payload.get(config.id_field):
        provider_id = f"{config.id_field}:{payload[config.id_field]}"
    return IncomingEvent(type=None, provider_id=provider_id, payload=payload)
