"""Mixture schedules: one mixture per training phase (a main phase, then an anneal).

A schedule is held as one vector over `domain@phase` names (`Config.weight_names`), each weight
a share of the whole run: v[d@p] = share_p * w_p[d], where w_p is phase p's mixture. The vector
sums to 1, each phase's block sums to its share, and everything that works on mixtures (the
design, the runs table, the surrogates, the solver) works on it unchanged, with group bounds
holding the blocks at their shares and the repetition caps over the whole run (the sum over
phases of v[d@p], against what domain d can serve).
"""

from automixer.schedule.design import plan_schedules
from automixer.schedule.phases import PHASE_SEP, Phases

__all__ = ["PHASE_SEP", "Phases", "plan_schedules"]
