//! Replay of the openb GPU cluster trace (Alibaba, ATC '23) through placement policies.
