"""The job core: a :class:`Job` run by a :class:`Runner`, reporting :class:`JobEvent`s.

Every front end (the CLI, the server, batch and cluster runs) builds jobs and drives a runner;
none re-implements job logic. See DESIGN.md, "one job core, several front ends".
"""

from ..errors import JobCancelled
from .events import CancelToken, EventSink, JobEvent
from .job import Job, options_from_dict, options_to_dict
from .runner import JobResult, Runner

__all__ = ["CancelToken", "EventSink", "Job", "JobCancelled", "JobEvent", "JobResult", "Runner",
           "options_from_dict", "options_to_dict"]
