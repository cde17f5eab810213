# commands: step step step step
x = 1  # @start
y = 2
