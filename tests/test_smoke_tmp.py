from tests.helpers import *

def test_buy(fake, run_bot):
    bot = run_bot("--debug")
    buy_signal(fake, 1000, 0)
    try:
        orders = fake.wait_orders(1, timeout=3)
        fake.wait_cancels(1)
    finally:
        rc = bot.stop()
        print(bot.output())
    assert rc == 0
