"""The Blueprint every route is declared on: flask-smorest's, reading arguments by the service's rules.

A route states what it reads and answers with flask-smorest's decorators; they load and
validate the arguments and describe both sides in /openapi.json (ml_service/openapi.py):

    @blp.route("/<user_id:user_id>")
    @blp.arguments(UserPathSchema, location="path", as_kwargs=True)
    @blp.arguments(SingleRequestSchema, location="query")
    @blp.response(200, RecommendationsSchema)
    def recommendations_for_user(args, user_id): ...

What differs from flask-smorest's defaults (webargs' FlaskParser):
- invalid arguments are a 400 `invalid_request` whose details name each field, as
  ml_service/errors.py answers any marshmallow ValidationError (webargs answers 422, its
  messages keyed by location);
- unknown query parameters, like unknown body fields, are refused: each schema's
  `Meta.unknown` (RAISE) decides, where webargs would drop unknown query parameters; an API
  route that reads no query (the batch's body, GET /api/model) refuses every query parameter;
- a parameter that is not a list given more than once (`limit=2&limit=3`) is refused, where
  webargs would take its first value;
- the JSON body is read by Flask, as everywhere else: a body that is not JSON is a 415, invalid
  JSON (or nested too deeply, ml_service/security.py) a 400 `bad_request`, where webargs would
  read a non-JSON body as no body;
- the query string is given to the schema as a plain dict (every value of a list field, the
  one value of any other): what webargs' MultiDictProxy reads, at a third of the parsing time.
"""

from __future__ import annotations

import functools

import flask_smorest
from flask import request
from marshmallow import ValidationError, fields
from webargs.flaskparser import FlaskParser

from ml_service.security import API_PREFIX

UNKNOWN = "Unknown field."  # marshmallow's message for a name its schema does not have
REPEATED = "Given more than once: give it once."


class ArgumentsParser(FlaskParser):
    """webargs' Flask parser, answering as the rest of the service does (see the module docstring)."""

    DEFAULT_VALIDATION_STATUS = 400  # also the status flask-smorest documents for invalid arguments

    def __init__(self) -> None:
        super().__init__(unknown=None)  # None: each schema's Meta.unknown applies, at every location

    def load_querystring(self, req, schema):
        """The query string as `schema` loads it: every value of its list fields, the one value of
        the others (unknown names included, so that they are refused). A name that is not a list
        given more than once is refused here."""
        args = req.args
        lists = {field.data_key or name for name, field in schema.fields.items() if isinstance(field, fields.List)}
        loaded = {}
        repeated = {}
        for name, values in args.lists():
            if name in lists:
                loaded[name] = values
            elif len(values) > 1:
                repeated[name] = [REPEATED]
            else:
                loaded[name] = values[0]
        if repeated:
            raise ValidationError(repeated)
        return loaded

    def load_json(self, req, schema):
        """The body as Flask parses it (415 when it is not sent as JSON, 400 when it is not valid JSON)."""
        return req.get_json()

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        """Raise the problems keyed by field, not by location, for errors.py to answer 400 invalid_request."""
        (messages,) = error.messages.values()  # webargs put them under the location: {"query": {...}}
        raise ValidationError(messages) from error


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the service's ArgumentsParser."""

    ARGUMENTS_PARSER = ArgumentsParser()

    def arguments(self, schema, **kwargs):
        """flask-smorest's, given a schema class or instance. A class is instantiated here, once:
        webargs would build an instance for every request, and a Schema's __init__ copies its
        fields (0.6 ms of the single GET's two schemas, a tenth of its CPU)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)

    def route(self, rule, **options):
        """flask-smorest's; an API route that declares no query arguments refuses any query parameter
        (`@blp.route` comes above `@blp.arguments`, so the arguments are declared by now)."""
        register = super().route(rule, **options)

        def decorator(func):
            declared = getattr(func, "_apidoc", {}).get("arguments", {}).get("parameters", [])
            if f"{self.url_prefix or ''}/".startswith(API_PREFIX) and all(p["in"] != "query" for p in declared):
                func = _refusing_query(func)
            return register(func)

        return decorator


def _refusing_query(view):
    """`view`, answering 400 `invalid_request` to any query parameter (it reads none)."""

    @functools.wraps(view)  # keeps flask-smorest's _apidoc
    def refusing(*args, **kwargs):
        if request.args:
            raise ValidationError({name: [UNKNOWN] for name in request.args})
        return view(*args, **kwargs)

    return refusing
