"""A Starlette app (FastAPI works the same way) with the worker in its lifespan.

Two things to notice:

* the worker starts and stops with the application (``async with worker`` in the
  lifespan); the web server handles signals, so the worker does not install its own;
* the signup endpoint queues the welcome email *inside the request's SQLAlchemy
  transaction* (``graphile_worker.sqlalchemy.add_job(session, ...)``): the job exists if and
  only if the user row was committed, and no second connection is used.

With FastAPI, write ``app = FastAPI(lifespan=lifespan)`` and the same handlers as routes.
Needs ``pip install starlette httpx 'graphile-worker[asyncpg]'``. Serve it with
``DATABASE_URL=... uvicorn examples.fastapi_app:app``, or run this file: it starts the app
in-process (lifespan included) behind an httpx client, signs a user up, waits for the
welcome job and exits::

    DATABASE_URL=postgresql://localhost/mydb python examples/fastapi_app.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar

import anyio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graphile_worker import WorkerUtils
from graphile_worker.sqlalchemy import add_job
from graphile_worker.worker import Worker, WorkerContext, WorkerOptions

DATABASE_URL = os.environ["DATABASE_URL"]
# SQLAlchemy wants the driver in the URL; graphile-worker accepts either spelling.
engine = create_async_engine(make_url(DATABASE_URL).set(drivername="postgresql+asyncpg"))
Session = async_sessionmaker(engine, expire_on_commit=False)


@dataclass
class SendWelcome:
    """The job's payload and its handler in one class."""

    IDENTIFIER: ClassVar[str] = "app_send_welcome"
    user_id: int

    async def run(self, ctx: WorkerContext) -> None:
        # Application state reaches handlers through the worker's extensions.
        app_engine = ctx.extensions["engine"]
        assert isinstance(app_engine, AsyncEngine)
        # ... send the email here, then remember that we did.
        async with app_engine.begin() as connection:
            await connection.execute(
                text("update app_users set welcomed_at = now() where id = :id"),
                {"id": self.user_id},
            )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "create table if not exists app_users "
                "(id serial primary key, email text not null, welcomed_at timestamptz)"
            )
        )
    async with await WorkerUtils.connect(DATABASE_URL) as utils:
        await utils.migrate()  # before the first request can queue a job
    worker = Worker(
        WorkerOptions(
            tasks=[SendWelcome],
            database_url=DATABASE_URL,
            concurrency=4,
            install_signal_handlers=False,  # uvicorn owns SIGINT/SIGTERM
            extensions={"engine": engine},
        )
    )
    async with worker:  # runs in the background; stopped gracefully on shutdown
        yield
    await engine.dispose()


async def signup(request: Request) -> JSONResponse:
    email = request.query_params["email"]
    async with Session() as session, session.begin():
        result = await session.execute(
            text("insert into app_users (email) values (:email) returning id"), {"email": email}
        )
        user_id = result.scalar_one()
        # Same transaction as the insert: commit both, or neither.
        await add_job(session, SendWelcome(user_id=user_id))
    return JSONResponse({"id": user_id}, status_code=201)


async def show_user(request: Request) -> JSONResponse:
    async with Session() as session:
        result = await session.execute(
            text("select email, welcomed_at is not null from app_users where id = :id"),
            {"id": int(request.path_params["user_id"])},
        )
        email, welcomed = result.one()
    return JSONResponse({"email": email, "welcomed": welcomed})


app = Starlette(
    routes=[
        Route("/signup", signup, methods=["POST"]),
        Route("/users/{user_id:int}", show_user),
    ],
    lifespan=lifespan,
)


async def main() -> None:
    import httpx

    # The app in-process, no server or port: its lifespan (so the worker too) around a
    # client that sends requests straight to the ASGI app.
    transport = httpx.ASGITransport(app=app)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        response = await client.post("/signup", params={"email": "ada@example.com"})
        user_id = response.json()["id"]
        for _ in range(600):  # the user's page shows the job's effect within 30 s
            if (await client.get(f"/users/{user_id}")).json()["welcomed"]:
                print(f"User {user_id} signed up and was welcomed by the worker.")
                return
            await anyio.sleep(0.05)
    raise SystemExit("the welcome job did not run within 30 seconds")


if __name__ == "__main__":
    anyio.run(main)
