"""The web workspace's pages (server-rendered HTML, no script): one router of the routers by noun.

- pages_tasks: the inbox, notifications, a task (instructions, form, diagram), starting a process;
- pages_instances: the instances, one instance (status, data, diagram, timeline) and its administrative acts;
- pages_audit: event search and downloads, chain verification, the instance and process reports;
- pages_designer: processes, versions, diagrams, diffs, and uploading a bundle to check or deploy.

Each acts as the signed-in user through the service layer (`auth.Acting`); refusals come from there.
"""

from __future__ import annotations

from fastapi import APIRouter

from pmoflow.engine.web import pages_audit, pages_designer, pages_instances, pages_tasks

router = APIRouter(include_in_schema=False)
for part in (pages_tasks, pages_instances, pages_audit, pages_designer):
    router.include_router(part.router)
