"""The job driver: the coordinator's operator sequencing a job over the nodes.

``job.Driver`` runs the phases (start, setup, align, binning, train, evaluate, save); each
phase is a module taking the ``context.JobContext``, through which every RPC is made.
"""
