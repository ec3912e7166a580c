"""A FastAPI app that puts jobs in its own transactions and runs async
handlers on its own event loop; see README.md beside this file."""
