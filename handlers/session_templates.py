"""Session templates: reusable session settings, private or public."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.conversations import columns
from cadre.engine.turns import canonical_options
from cadre.replies import page_reply
from models_gen.api import SessionTemplate as TemplateReply
from models_gen.api import SessionTemplateList
from storage import sessions


def _fields(template: sessions.SessionTemplate) -> dict:
    return {**columns(template), "owner_id": template.owner_id}


def _reply(template: sessions.SessionTemplate) -> TemplateReply:
    return TemplateReply.model_validate(_fields(template))


def _body(body: dict) -> dict:
    if "sdk_options" in body:
        return {**body, "sdk_options": canonical_options(body["sdk_options"], "body.sdk_options")}
    return body


def list_session_templates(
    user: str,
    limit: int,
    offset: int,
    category: str | None = None,
    is_public: bool | None = None,
    after: str | None = None,
) -> Reply:
    page = sessions.list_templates(
        user, category=category, is_public=is_public, limit=limit, offset=offset, after=after
    )
    return page_reply(
        SessionTemplateList,
        page,
        map(_fields, page.rows),
        path="/api/v1/session-templates",
        limit=limit,
        offset=offset,
        category=category,
        is_public=is_public,
    )


def create_session_template(user: str, body: dict) -> Reply:
    fields = _body({"sdk_options": {}, **body})
    return _reply(sessions.create_template(user, **fields)), 201


def get_session_template(user: str, template_id: str) -> Reply:
    return _reply(sessions.get_template(template_id, user)), 200


def update_session_template(user: str, template_id: str, body: dict) -> Reply:
    template = sessions.get_own_template(template_id, user)
    return _reply(sessions.update_template(template, _body(body))), 200


def delete_session_template(user: str, template_id: str) -> tuple[None, int]:
    sessions.delete_template(sessions.get_own_template(template_id, user))
    return None, 204
