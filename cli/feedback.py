"""`shoprank feedback` and `shoprank forget`: tell a running service what a user did, or make it forget the user."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid


from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc

from .options import api_metadata, client_options, open_channel

EVENT_TYPES = {"view": ranking_pb2.EVENT_TYPE_VIEW, "click": ranking_pb2.EVENT_TYPE_CLICK,
               "cart": ranking_pb2.EVENT_TYPE_CART, "purchase": ranking_pb2.EVENT_TYPE_PURCHASE}


def feedback_event(user_id: str, product_id: str, kind: str, query: str = "", quantity: int | None = None,
                   event_id: str | None = None, at: float | None = None, request_id: str = "",
                   position: int | None = None) -> ranking_pb2.FeedbackEvent:
    """One feedback message; a fresh event id and the current time unless given."""
    event = ranking_pb2.FeedbackEvent(event_id=event_id or uuid.uuid4().hex, user_id=user_id, product_id=product_id,
                                      type=EVENT_TYPES[kind], query=query, request_id=request_id)
    if quantity is not None:
        event.quantity = quantity
    if position is not None:
        event.position = position
    event.time.FromNanoseconds(int((time.time() if at is None else at) * 1e9))
    return event


async def _call(args: argparse.Namespace, method: str, request):
    async with open_channel(args, args.server) as channel:
        return await getattr(ranking_pb2_grpc.RankingStub(channel), method)(request, timeout=30,
                                                                            metadata=api_metadata(args))


def cmd_feedback(args: argparse.Namespace) -> None:
    event = feedback_event(args.user_id, args.product_id, args.type, args.query or "", args.quantity, args.event_id,
                           request_id=args.request_id or "", position=args.position)
    ack = asyncio.run(_call(args, "Feedback", event))
    print(f"event {event.event_id}: " + ("already recorded, not counted again" if ack.duplicate else "recorded"))


def cmd_forget(args: argparse.Namespace) -> None:
    response = asyncio.run(_call(args, "ForgetUser", ranking_pb2.ForgetUserRequest(user_id=args.user_id)))
    print(f"forgot the user: {response.events_deleted} events deleted")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("feedback", help="send one feedback event (view, click, cart, purchase) to a running service")
    sub.add_argument("user_id")
    sub.add_argument("product_id")
    sub.add_argument("type", choices=tuple(EVENT_TYPES))
    sub.add_argument("--query", help="the query the event came from")
    sub.add_argument("--quantity", type=int)
    sub.add_argument("--event-id", help="default: a fresh random id (sending the same id twice counts once)")
    sub.add_argument("--request-id", help="the request id of the answer that showed the product (`shoprank search` "
                                          "prints it): joins the event to that answer and its experiment")
    sub.add_argument("--position", type=int, help="the product's 1-based position in that answer")
    sub.add_argument("--server", default="127.0.0.1:50051")
    client_options(sub)
    sub.set_defaults(func=cmd_feedback)

    sub = commands.add_parser("forget", help="delete a user's profile and events from the service's store")
    sub.add_argument("user_id")
    sub.add_argument("--server", default="127.0.0.1:50051")
    client_options(sub)
    sub.set_defaults(func=cmd_forget)
