"""The portfolio ledger: positions, cash, realized/unrealized P&L and charges. Pure."""

from alpha_panda.portfolio.ledger import Position, PositionLedger

__all__ = ["Position", "PositionLedger"]
