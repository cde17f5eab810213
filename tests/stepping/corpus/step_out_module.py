# commands: step_out step
x = 1  # @start
y = 2
print(x + y)
