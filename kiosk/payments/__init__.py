"""Payments: payment intents (one per charge attempt on a terminal) and the Mercado Pago client."""
