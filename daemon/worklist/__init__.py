"""The clinic's Modality Worklist: the C-FIND that asks it for today's
scheduled steps of this station (query), the cached list refreshed on a
schedule that keeps working when the worklist does not answer (items), and
which acquisition session is bound to which scheduled step, so that its
images carry the step's patient and study (binding)."""
