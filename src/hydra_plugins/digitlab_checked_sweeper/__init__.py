"""digitlab's default sweeper for `-m` (`hydra/sweeper=checked`, the default): Hydra's basic sweeper, but every job of
the sweep is composed and checked before the first one trains, whatever the launcher."""
