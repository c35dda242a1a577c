"""Scale-out: batches of jobs and long videos across many workers (a local pool or Ray).

A video is cut at its keyframes into segments (:mod:`.plan`), each swapped into its own file by a
worker that keeps a Session loaded (:mod:`.segment`), and the segments are joined by remuxing
packets (:mod:`.join`): frame- and timestamp-exact, the audio copied once. :mod:`.manifest` keeps
the work on (shared) storage so a batch resumes where it stopped; :mod:`.batch` drives it all on
a :mod:`.local` process pool or a :mod:`.ray_executor` actor pool. See DESIGN.md, "Next layers".
"""

from .batch import BatchDriver, BatchOptions
from .cluster import ClusterRunner
from .executor import Executor, Outcome, TaskQueue
from .inputs import read_batch
from .join import JoinReport, join_segments
from .local import LocalExecutor
from .manifest import JobFolder, SegmentDescriptor
from .plan import Segment, VideoPlan, VideoScan, plan_segments, scan_video
from .report import BatchReport, JobSummary
from .segment import SegmentTask, SegmentWorker, WorkerSettings, passthrough_stages

__all__ = ["BatchDriver", "BatchOptions", "BatchReport", "ClusterRunner", "Executor", "JobFolder", "JobSummary",
           "JoinReport", "LocalExecutor", "Outcome", "Segment", "SegmentDescriptor", "SegmentTask", "SegmentWorker",
           "TaskQueue", "VideoPlan", "VideoScan", "WorkerSettings", "join_segments", "passthrough_stages",
           "plan_segments", "read_batch", "scan_video"]
