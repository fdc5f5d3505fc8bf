"""Pure domain: values, events, errors. Imports no infrastructure."""
